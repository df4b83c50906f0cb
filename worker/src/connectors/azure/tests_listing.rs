//! The list actions against the local Sentinel and Graph: a window listed page by page through
//! the next links, each incident with its entities; a next link off the API's origin is
//! refused before anything is sent.

use riposte_test_support::azure::{self as local, AzureServer};
use serde_json::Value;

use super::listing::{Window, graph_alerts, sentinel_incidents};
use super::tests::{client, cx, settings};
use super::*;

const SECRET: &str = "local-test-secret-Zq8";

/// A window from after the main incident's last change (January 2026) on.
fn window(page_size: u32) -> Window {
    Window {
        from: "2026-02-01T00:00:00Z".into(),
        to: "2100-01-01T00:00:00Z".into(),
        page_size,
        next_link: None,
    }
}

/// Every page of a window: the items, and how many pages it took.
async fn all_pages<F, Fut>(first: Window, fetch: F) -> (Vec<Value>, usize)
where
    F: Fn(Window) -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let mut window = first;
    let (mut items, mut pages) = (Vec::new(), 0);
    loop {
        let page = fetch(window.clone()).await;
        pages += 1;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_link"].as_str() {
            Some(link) => window.next_link = Some(Url::parse(link).unwrap()),
            None => return (items, pages),
        }
    }
}

#[tokio::test]
async fn sentinel_incidents_come_page_by_page_oldest_change_first_with_their_entities() {
    let server = AzureServer::start(SECRET).await;
    let ids: Vec<String> = (0..5)
        .map(|n| server.add_incident(&format!("incident {n}"), &format!("198.51.100.{n}")))
        .collect();
    server.update_feed_item(&ids[0], "Active");
    let workspace = ArmId::parse(local::WORKSPACE_ID, id::Kind::Workspace).unwrap();
    let client = client(&settings(&server));
    let (items, pages) = all_pages(window(2), async |w| {
        sentinel_incidents(&client, &workspace, &w, &cx(false))
            .await
            .unwrap()
    })
    .await;
    assert_eq!(pages, 3);
    let listed: Vec<&str> = items
        .iter()
        .map(|i| i["object"]["id"].as_str().unwrap())
        .collect();
    let mut wanted: Vec<&str> = ids[1..].iter().map(String::as_str).collect();
    wanted.push(&ids[0]);
    assert_eq!(listed, wanted, "in the order of their last change");
    let entities = &items[0]["object"]["properties"]["relatedEntities"];
    assert_eq!(entities[0]["kind"], "Ip");
    assert_eq!(entities[0]["properties"]["address"], "198.51.100.1");
    let lists = server.requests_to("GET", "/Microsoft.SecurityInsights/incidents");
    let first = &lists[0].query;
    assert!(
        first.contains("%24orderby=properties%2FlastModifiedTimeUtc+asc")
            && first.contains("%24top=2"),
        "{first}"
    );
}

#[tokio::test]
async fn graph_alerts_come_page_by_page_and_a_foreign_next_link_is_refused() {
    let server = AzureServer::start(SECRET).await;
    for n in 0..3 {
        server.add_graph_alert(&format!("alert {n}"), &format!("198.51.100.{n}"));
    }
    let client = client(&settings(&server));
    let (items, pages) = all_pages(window(2), async |w| {
        graph_alerts(&client, &w, &cx(false)).await.unwrap()
    })
    .await;
    assert_eq!((items.len(), pages), (3, 2));
    assert_eq!(items[2]["evidence"][0]["ipAddress"], "198.51.100.2");

    let sent = server.requests().len();
    let foreign = Window {
        next_link: Some(Url::parse("https://graph.example.net/v1.0/security/alerts_v2").unwrap()),
        ..window(2)
    };
    let refused = graph_alerts(&client, &foreign, &cx(false))
        .await
        .unwrap_err();
    assert!(
        refused.message.contains("followed only on") && !refused.retryable,
        "{refused:?}"
    );
    assert_eq!(server.requests().len(), sent, "nothing was sent");
}
