//! Network namespaces for tests that change a host's firewall for real (as root): uniquely
//! named namespaces, veth links with TEST-NET addresses, a TCP listener inside a namespace and
//! TCP connects from one, and the [`Topology`] the firewall tests share.
//!
//! Names carry the process id and a counter, so parallel tests and test processes never
//! collide; everything is deleted on drop, and namespaces left by a process that died are
//! swept when the next topology is built. Traffic only flows between our own namespaces.
//!
//! A socket belongs to the network namespace of the thread that created it, so the listener
//! and the connects run on a fresh thread that first `setns`es into `/run/netns/NAME`; the
//! socket then keeps its namespace whichever thread uses it.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use serde_json::Value;

/// How long a test connect waits for the handshake; a dropped SYN fails after this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Pause of the listener's accept loop between two looks for a connection or a stop.
const ACCEPT_POLL: Duration = Duration::from_millis(10);
/// Where `ip netns` keeps the namespaces.
const NETNS_DIR: &str = "/run/netns";
/// Prefix of every namespace and root-side link these tests create.
const PREFIX: &str = "rpt";
/// Number of /30 subnets of [`ROOT_RANGE`] for links to the root namespace.
const ROOT_SUBNETS: u8 = 64;
/// The /24 (TEST-NET-2) whose /30s link namespaces to the root namespace; a /30 that overlaps
/// any route or address of the root namespace is never used.
const ROOT_RANGE: [u8; 3] = [198, 51, 100];

/// The attacker's address, on its /30 link to the target.
pub const ATTACKER_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// The target's address on the attacker's link.
pub const TARGET_FOR_ATTACKER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The other (innocent) client's address, on its /30 link to the target.
pub const OTHER_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 6);
/// The target's address on the other client's link.
pub const TARGET_FOR_OTHER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A counter unique in this process.
fn next() -> usize {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs `ip ARGS`; panics with its stderr when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e} (these tests need root and iproute2)"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// A new namespace named `rpt-PID-N-ROLE`, with its loopback up.
    pub fn new(role: &str) -> Netns {
        let name = format!("{PREFIX}-{}-{}-{role}", std::process::id(), next());
        ip(&["netns", "add", &name]);
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    /// Its name, for `ip netns exec` and `Worker::builder(..).netns(..)`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// `nft ARGS` inside: (exit code, stdout, stderr).
    pub fn nft(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft"])
            .args(args)
            .output()
            .expect("ip netns exec runs (these tests need root and nftables)");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (
            out.status.code().unwrap_or(-1),
            text(&out.stdout),
            text(&out.stderr),
        )
    }

    /// `nft -j ARGS` inside, parsed; panics when nft fails.
    pub fn nft_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = self.nft(&all);
        assert_eq!(code, 0, "nft {}: {stderr}", all.join(" "));
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("nft JSON ({e}): {stdout}"))
    }

    /// A TCP listener on `addr` inside this namespace that accepts and closes connections.
    pub fn listen_tcp(&self, addr: SocketAddr) -> Listener {
        let listener = in_netns(&self.path(), move || TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("bind {addr} in {}: {e}", self.name));
        Listener::start(listener)
    }

    /// Whether a TCP connect from inside this namespace to `addr` completes within
    /// [`CONNECT_TIMEOUT`]; `Err` says why not.
    pub async fn connect(&self, addr: SocketAddr) -> Result<(), String> {
        let path = self.path();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let result =
                enter(&path).and_then(|()| TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT));
            let _ = tx.send(result.map(drop).map_err(|e| e.to_string()));
        });
        rx.await
            .unwrap_or_else(|_| Err("the connect thread died".into()))
    }

    /// True when [`Netns::connect`] succeeds.
    pub async fn connects(&self, addr: SocketAddr) -> bool {
        self.connect(addr).await.is_ok()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs `f` on a fresh thread that joined the namespace at `path` first.
fn in_netns<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let path = path.to_owned();
    std::thread::spawn(move || enter(&path).and_then(|()| f()))
        .join()
        .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}

/// Moves the current thread into the network namespace at `path` (for good: call it on a
/// thread of its own).
fn enter(path: &Path) -> std::io::Result<()> {
    let file = File::open(path)?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

/// A listening socket served by a thread that accepts and closes; stopped on drop.
pub struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    fn start(listener: TcpListener) -> Listener {
        let addr = listener.local_addr().expect("a bound address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking socket");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => drop(stream),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
                    Err(_) => std::thread::sleep(ACCEPT_POLL),
                }
            }
        });
        Listener {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One /30 of [`ROOT_RANGE`] claimed for a link to the root namespace: a file created
/// exclusively, holding the claiming process id, removed on drop (a claim of a dead process
/// is taken over). A /30 the root namespace already routes (the host's own networks) is
/// skipped, so the test never shadows a real address.
struct RootSubnet {
    index: u8,
    file: PathBuf,
}

impl RootSubnet {
    fn claim() -> RootSubnet {
        let dir = std::env::temp_dir().join("riposte-netns-claims");
        std::fs::create_dir_all(&dir).expect("the claims folder");
        let routes = root_routes();
        for index in 0..ROOT_SUBNETS {
            let network = u32::from(Ipv4Addr::from([
                ROOT_RANGE[0],
                ROOT_RANGE[1],
                ROOT_RANGE[2],
                index * 4,
            ]));
            if routes
                .iter()
                .any(|&(addr, len)| overlaps((network, 30), (addr, len)))
            {
                continue;
            }
            let file = dir.join(format!("subnet-{index}"));
            if Self::try_create(&file) {
                return RootSubnet { index, file };
            }
            if Self::is_stale(&file) {
                let _ = std::fs::remove_file(&file);
                if Self::try_create(&file) {
                    return RootSubnet { index, file };
                }
            }
        }
        panic!("no free /30 of {ROOT_RANGE:?}.0/24 for a link to the root namespace");
    }

    fn try_create(file: &Path) -> bool {
        match OpenOptions::new().write(true).create_new(true).open(file) {
            Ok(mut f) => {
                let _ = write!(f, "{}", std::process::id());
                true
            }
            Err(_) => false,
        }
    }

    /// The claim names a process that is gone.
    fn is_stale(file: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(file) else {
            return false;
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            return false;
        };
        !Path::new(&format!("/proc/{pid}")).exists()
    }

    /// `.1` of the subnet: the root side.
    fn root(&self) -> Ipv4Addr {
        let [a, b, c] = ROOT_RANGE;
        Ipv4Addr::new(a, b, c, self.index * 4 + 1)
    }

    /// `.2` of the subnet: the namespace side.
    fn inner(&self) -> Ipv4Addr {
        let [a, b, c] = ROOT_RANGE;
        Ipv4Addr::new(a, b, c, self.index * 4 + 2)
    }
}

impl Drop for RootSubnet {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Every IPv4 destination the root namespace routes (all tables, so local addresses too), as
/// (network, prefix length); the default route is left out.
fn root_routes() -> Vec<(u32, u8)> {
    let out = Command::new("ip")
        .args(["-j", "-4", "route", "show", "table", "all"])
        .output()
        .expect("ip route runs (these tests need iproute2)");
    let routes: Vec<Value> =
        serde_json::from_slice(&out.stdout).expect("`ip -j route` answers a JSON list");
    routes
        .iter()
        .filter_map(|route| route.get("dst").and_then(Value::as_str))
        .filter_map(|dst| {
            let (addr, len) = dst.split_once('/').unwrap_or((dst, "32"));
            let addr: Ipv4Addr = addr.parse().ok()?;
            Some((u32::from(addr), len.parse().ok()?))
        })
        .collect()
}

/// Two IPv4 networks share an address.
fn overlaps((a, a_len): (u32, u8), (b, b_len): (u32, u8)) -> bool {
    let len = a_len.min(b_len).min(32);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a & mask == b & mask
}

/// A veth whose one end is in the root namespace; deleting it deletes the pair.
struct RootLink {
    name: String,
}

impl Drop for RootLink {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .output();
    }
}

/// The test host and its neighbours:
///
/// ```text
/// root 198.51.100.(4k+1) ── 198.51.100.(4k+2) target 203.0.113.1 ── 203.0.113.2 attacker
///                                              203.0.113.5 ── 203.0.113.6 other
/// ```
///
/// The orchestrator listens on [`Topology::orchestrator_listen`] in the root namespace; the
/// worker runs in `target` and reaches it over the uplink.
pub struct Topology {
    // Dropped first: the link, then its claim, then the namespaces.
    uplink: RootLink,
    subnet: RootSubnet,
    /// Runs the worker and the services under test.
    pub target: Netns,
    /// The source that gets blocked or granted.
    pub attacker: Netns,
    /// A source nothing is done to.
    pub other: Netns,
}

impl Topology {
    /// Builds the namespaces and links (sweeping those of dead test processes first).
    pub fn new() -> Topology {
        sweep_stale();
        let target = Netns::new("target");
        let attacker = Netns::new("attacker");
        let other = Netns::new("other");
        link_pair(&target, &attacker, TARGET_FOR_ATTACKER, ATTACKER_IP);
        link_pair(&target, &other, TARGET_FOR_OTHER, OTHER_IP);
        let subnet = RootSubnet::claim();
        let uplink = link_root(&target, &subnet);
        Topology {
            uplink,
            subnet,
            target,
            attacker,
            other,
        }
    }

    /// `ADDR:0` on the root side of the uplink, for `Orchestrator::builder().listen(..)`.
    pub fn orchestrator_listen(&self) -> String {
        format!("{}:0", self.subnet.root())
    }

    /// The name of the root-side link.
    pub fn uplink(&self) -> &str {
        &self.uplink.name
    }
}

impl Default for Topology {
    fn default() -> Topology {
        Topology::new()
    }
}

/// A veth between `a` (address `a_ip`/30) and `b` (`b_ip`/30), both ends up.
fn link_pair(a: &Netns, b: &Netns, a_ip: Ipv4Addr, b_ip: Ipv4Addr) {
    let (a_end, b_end) = (format!("to-{}", next()), format!("to-{}", next()));
    ip(&[
        "link",
        "add",
        &a_end,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        &b_end,
        "netns",
        b.name(),
    ]);
    for (netns, end, addr) in [(a, &a_end, a_ip), (b, &b_end, b_ip)] {
        netns.ip(&["addr", "add", &format!("{addr}/30"), "dev", end]);
        netns.ip(&["link", "set", end, "up"]);
    }
}

/// A veth between the root namespace and `inner`, on `subnet`.
fn link_root(inner: &Netns, subnet: &RootSubnet) -> RootLink {
    let root_end = format!("{PREFIX}{}u{}", std::process::id(), next());
    let inner_end = "uplink";
    ip(&[
        "link",
        "add",
        &root_end,
        "type",
        "veth",
        "peer",
        "name",
        inner_end,
        "netns",
        inner.name(),
    ]);
    let link = RootLink { name: root_end };
    ip(&[
        "addr",
        "add",
        &format!("{}/30", subnet.root()),
        "dev",
        &link.name,
    ]);
    ip(&["link", "set", &link.name, "up"]);
    inner.ip(&[
        "addr",
        "add",
        &format!("{}/30", subnet.inner()),
        "dev",
        inner_end,
    ]);
    inner.ip(&["link", "set", inner_end, "up"]);
    link
}

/// Deletes namespaces and root-side links whose name carries the id of a dead process.
fn sweep_stale() {
    let dead = |name: &str| {
        let pid = name
            .strip_prefix(PREFIX)
            .map(|rest| rest.trim_start_matches('-'))
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|pid| pid.parse::<u32>().ok());
        pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    for (dir, args) in [
        (NETNS_DIR, ["netns", "del"]),
        ("/sys/class/net", ["link", "del"]),
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(PREFIX) && dead(&name) {
                let _ = Command::new("ip").args(args).arg(&name).output();
            }
        }
    }
}
