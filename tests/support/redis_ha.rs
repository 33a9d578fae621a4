//! Redis with high availability, for real: a master and a replica
//! (`redis-server`, both with a password) watched by three Redis Sentinels
//! (`redis-server <conf> --sentinel`, the same binary), every process on a
//! free loopback port, all killed on drop. The sentinels decide quickly
//! (`down-after-milliseconds` 1000), so a failover takes a few seconds.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Redis;

/// The name the sentinels monitor the master under.
pub const HA_MASTER_NAME: &str = "gh-main";
/// The password of the master and the replica (`requirepass`, `masterauth`).
pub const HA_PASSWORD: &str = "Sentinel-Test-Pa55word-91c2e7";

/// A master, its replica and three sentinels.
pub struct RedisHa {
    pub master: Redis,
    pub replica: Redis,
    pub sentinels: Vec<Sentinel>,
}

impl RedisHa {
    /// Starts the master, then the replica (waiting until it is in sync),
    /// then three sentinels (waiting until each knows the replica and the
    /// two others, so that they can agree on a failover).
    pub fn start() -> RedisHa {
        let auth = ["--requirepass", HA_PASSWORD, "--masterauth", HA_PASSWORD];
        // A replica syncs at once rather than after the default 5 s.
        let sync_now = ["--repl-diskless-sync-delay", "0"];
        let master = Redis::start_with(&[&auth[..], &sync_now[..]].concat());
        let master_port = master.port.to_string();
        let replica = Redis::start_with(
            &[
                &auth[..],
                &sync_now[..],
                &["--replicaof", "127.0.0.1", &master_port],
            ]
            .concat(),
        );
        wait_for("the replica to sync", Duration::from_secs(10), || {
            info(replica.port, "replication").contains("master_link_status:up")
        });
        let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(master.port)).collect();
        for s in &sentinels {
            wait_for(
                "the sentinels to know the replica and each other",
                Duration::from_secs(15),
                || {
                    let fields = s.master_fields();
                    fields.get("num-slaves").map(String::as_str) == Some("1")
                        && fields.get("num-other-sentinels").map(String::as_str) == Some("2")
                },
            );
        }
        RedisHa {
            master,
            replica,
            sentinels,
        }
    }

    /// The sentinels as a YAML flow list: `[127.0.0.1:p1, …]`.
    pub fn sentinels_yaml(&self) -> String {
        let list: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("[{}]", list.join(", "))
    }

    /// An async connection to the data server on `port` (master or replica).
    pub async fn connect(port: u16) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://:{HA_PASSWORD}@127.0.0.1:{port}/0"))
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis")
    }
}

/// One Redis Sentinel monitoring [`HA_MASTER_NAME`].
pub struct Sentinel {
    pub port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    fn start(master_port: u16) -> Sentinel {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let dir = tempfile::tempdir().expect("sentinel dir");
        let conf = dir.path().join("sentinel.conf");
        // The sentinel rewrites its file: it must be its own, and writable.
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {HA_MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                 sentinel auth-pass {HA_MASTER_NAME} {HA_PASSWORD}\n\
                 sentinel down-after-milliseconds {HA_MASTER_NAME} 1000\n\
                 sentinel failover-timeout {HA_MASTER_NAME} 3000\n\
                 sentinel parallel-syncs {HA_MASTER_NAME} 1\n",
                dir = dir.path().display()
            ),
        )
        .expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server missing ({e}): run scripts/test (it installs Debian's redis-server)")
            });
        let sentinel = Sentinel {
            port,
            child: Some(child),
            _dir: dir,
        };
        wait_for("a sentinel to answer", Duration::from_secs(10), || {
            sentinel.connection().is_some()
        });
        sentinel
    }

    fn connection(&self) -> Option<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .ok()?
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()
    }

    /// `SENTINEL MASTER <name>` as fields (empty when it does not answer).
    fn master_fields(&self) -> std::collections::HashMap<String, String> {
        self.connection()
            .and_then(|mut c| {
                redis::cmd("SENTINEL")
                    .arg("MASTER")
                    .arg(HA_MASTER_NAME)
                    .query(&mut c)
                    .ok()
            })
            .unwrap_or_default()
    }

    /// An async connection, for watching the master's address.
    pub async fn connect(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .expect("sentinel url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to a test sentinel")
    }

    /// The port of the master this sentinel names now.
    pub async fn master_port(conn: &mut redis::aio::MultiplexedConnection) -> Option<u16> {
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(HA_MASTER_NAME)
            .query_async(conn)
            .await
            .ok()?;
        addr.map(|(_, port)| port)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `INFO <section>` of the data server on `port` (empty when it does not
/// answer).
fn info(port: u16, section: &str) -> String {
    let conn = redis::Client::open(format!("redis://:{HA_PASSWORD}@127.0.0.1:{port}/0"))
        .ok()
        .and_then(|c| {
            c.get_connection_with_timeout(Duration::from_millis(500))
                .ok()
        });
    conn.and_then(|mut c| redis::cmd("INFO").arg(section).query(&mut c).ok())
        .unwrap_or_default()
}

/// Polls `ready` every 50 ms until it is true, or panics after `within`.
fn wait_for(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < within, "waited {within:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
