//! The alert figures as `riposte-bench` prints them: the table, then the notes.

use std::time::Duration;

use super::*;

impl Figures {
    /// `floor` is the per-step floor (gRPC round trip + sled insert and flush).
    pub fn print(&self, floor: Duration) {
        let ratio = |d: Duration| format!("{:.1}x", d.as_secs_f64() / floor.as_secs_f64());
        println!();
        println!(
            "alerts (a deduplicating rule on; {WORKERS} workers, --concurrency {WORKER_CONCURRENCY})"
        );
        println!(
            "{:<52} {:>14} {:>9}  {:<22} verdict",
            "", "value", "vs floor", "target"
        );
        let to_stored = |what: &str, samples: &Samples| {
            let p99 = samples.p99();
            println!(
                "{:<52} {:>11.3} ms {:>9}  {:<22}",
                format!("  p99 to stored ({what})"),
                ms(p99),
                ratio(p99),
                "-"
            );
        };
        for (what, figures, min, how) in [
            (
                format!(
                    "ingested over HTTP, {HTTP_SENDERS} senders x {HTTP_CONCURRENCY} connections"
                ),
                &self.http,
                HTTP_ALERTS_PER_SECOND_MIN,
                "POST sent to its 200",
            ),
            (
                format!("ingested over TCP syslog, {SYSLOG_CONNECTIONS} connections"),
                &self.syslog,
                SYSLOG_ALERTS_PER_SECOND_MIN,
                "probe line to its close",
            ),
        ] {
            let per_alert = Duration::from_secs_f64(1.0 / figures.per_second());
            let met = figures.per_second() >= min;
            println!(
                "{what:<52} {:>10.0} /s {:>9}  {:<22} {}",
                figures.per_second(),
                ratio(per_alert),
                format!(">= {min:.0} alerts/s"),
                crate::verdict(met)
            );
            to_stored(how, &figures.to_stored);
        }
        println!(
            "{:<52} {:>9.1} MiB {:>9}  {:<22}",
            "orchestrator peak RSS after both",
            self.syslog.peak_rss_kib as f64 / 1024.0,
            "-",
            "-"
        );
        let p50 = self.first_action.median();
        let p99 = self.first_action.p99();
        println!(
            "{:<52} {:>11.3} ms {:>9}  {:<22}",
            format!("alert to first action, {LATENCY_RATE}/s open loop, p50"),
            ms(p50),
            ratio(p50),
            "-"
        );
        println!(
            "{:<52} {:>11.3} ms {:>9}  {:<22} {}",
            format!("alert to first action, {LATENCY_RATE}/s open loop, p99"),
            ms(p99),
            ratio(p99),
            format!("< {} ms", FIRST_ACTION_P99_MAX.as_millis()),
            crate::verdict(p99 < FIRST_ACTION_P99_MAX)
        );
        let storm = &self.storm;
        let rate = storm.alerts as f64 / storm.elapsed.as_secs_f64();
        println!(
            "{:<52} {:>10.0} /s {:>9}  {:<22}",
            format!("storm of one kind over TCP syslog, {}s", STORM.as_secs()),
            rate,
            "-",
            "-"
        );
        to_stored("probe line to its close", &storm.to_stored);
        println!(
            "{:<52} {:>9.1} MiB {:>9}  {:<22}",
            "orchestrator peak RSS after the storm",
            storm.peak_rss_kib as f64 / 1024.0,
            "-",
            "-"
        );
        println!();
        println!("notes");
        for (what, figures) in [("HTTP", &self.http), ("syslog", &self.syslog)] {
            println!(
                "  {what}: {} alerts in {:.2} s{} over {DISTINCT_IPS} IPs, {} runs started (the rest coalesced); orchestrator {:.3} CPU-ms per alert ({:.2} cores), peak RSS {:.1} MiB after it; load generator (this process, same machine) {:.2} cores",
                figures.alerts,
                figures.elapsed.as_secs_f64(),
                figures.spread(),
                figures.started,
                ms(figures.orchestrator_cpu) / figures.alerts as f64,
                figures.orchestrator_cpu.as_secs_f64() / figures.elapsed.as_secs_f64(),
                figures.peak_rss_kib as f64 / 1024.0,
                figures.client_cpu.as_secs_f64() / figures.elapsed.as_secs_f64(),
            );
        }
        for (what, samples, how) in [
            (
                "HTTP",
                &self.http.to_stored,
                "every alert, from its POST being sent to its 200, which is answered once the alert is durable",
            ),
            (
                "syslog",
                &self.syslog.to_stored,
                "probe lines sent while the phase ran, each on a connection of its own, from its write to the listener's close, which comes once every line read from it is durable",
            ),
            (
                "storm",
                &storm.to_stored,
                "probe lines, as in the syslog phase",
            ),
        ] {
            println!(
                "  {what} to stored: p50 {:.3} ms, p99 {:.3} ms, slowest {:.3} ms over {} samples: {how}",
                ms(samples.median()),
                ms(samples.p99()),
                ms(samples.max()),
                samples.len(),
            );
        }
        let at = |second: usize| {
            storm
                .rss_kib
                .get(second.min(storm.rss_kib.len().saturating_sub(1)))
                .map_or(0.0, |k| *k as f64 / 1024.0)
        };
        println!(
            "  storm: {} alerts of one kind in {:.1} s from {STORM_IPS} addresses, {} runs started (the rule's budget: {STORM_BUDGET}); resident set after 10 s {:.1} MiB, 30 s {:.1} MiB, at the end {:.1} MiB (the orchestrator keeps the newest {} alerts)",
            storm.alerts,
            storm.elapsed.as_secs_f64(),
            storm.runs,
            at(9),
            at(29),
            at(usize::MAX),
            ALERTS_KEPT,
        );
        println!(
            "  first action: {} alerts, each a new run; from the POST being sent to the worker's http.request reaching a sink in this process; {} POSTs refused; the latest send was {:.1} ms behind its schedule",
            self.first_action.len(),
            self.latency_refused,
            ms(self.late_max)
        );
    }
}
