//! Test harness: the real `omnigate` binary on ephemeral ports, real upstream
//! HTTP servers, real TLS clients. Every process and port is owned by a value
//! that cleans up when dropped, so tests run in parallel.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A loopback port for a process the test starts next (a gateway, a
/// private Redis) or for an address that must stay dead. Taken below the
/// kernel's ephemeral range, so no server or client binding `:0` (test
/// upstreams, providers, outgoing connections) can take it meanwhile, and
/// never handed out twice in this test binary; one that is busy (another
/// run) is skipped.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000; // below 32768, where Linux starts ephemeral ports
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let _ = NEXT.compare_exchange(
        0,
        1 + rand::random::<u32>() % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

fn spawn_gateway(config: &Path, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let err = out.try_clone().expect("log clone");
    Command::new(env!("CARGO_BIN_EXE_omnigate"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("spawn omnigate")
}

/// Ports for a gateway's `http`, `https` and `admin` listeners.
pub fn reserve_ports() -> HashMap<&'static str, u16> {
    ["http", "https", "admin"]
        .into_iter()
        .map(|n| (n, free_port()))
        .collect()
}

/// A running gateway process.
pub struct Gateway {
    child: Child,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub ports: HashMap<&'static str, u16>,
    pub log: PathBuf,
}

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

impl Gateway {
    /// Writes `files` and `config` (with `{http}`, `{https}`, `{admin}`,
    /// `{dir}` replaced) into a fresh directory and starts the binary on it.
    pub async fn start(config: &str, files: &[(&str, &str)]) -> Gateway {
        Gateway::start_on(reserve_ports(), config, files).await
    }

    /// Like [`Gateway::start`] on ports chosen beforehand (see [`reserve_ports`]),
    /// for peers that must know the gateway's address first.
    pub async fn start_on(
        ports: HashMap<&'static str, u16>,
        config: &str,
        files: &[(&str, &str)],
    ) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let render = |text: &str| {
            let mut t = text.to_string();
            for (k, v) in &ports {
                t = t.replace(&format!("{{{k}}}"), &v.to_string());
            }
            t.replace("{dir}", &dir.path().display().to_string())
        };
        for (name, text) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, render(text)).expect("write file");
        }
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, render(config)).expect("write config");
        let log = dir.path().join("gateway.log");
        let child = spawn_gateway(&config_path, &log);
        let mut gw = Gateway {
            child,
            dir,
            config: config_path,
            ports,
            log,
        };
        gw.wait_ready().await;
        gw
    }

    /// Kills the process and starts it again on the same config, ports and
    /// state directory (what an operator's restart does).
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_gateway(&self.config, &self.log);
        self.wait_ready().await;
    }

    pub fn port(&self, name: &str) -> u16 {
        self.ports[name]
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port(name)))
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls the log for a line containing `needle` and returns it: the access
    /// log is written by a background appender, so a line may land a moment
    /// after the response did.
    pub async fn wait_log(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.logs().lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with `{needle}` in {within:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("omnigate exited early ({status}):\n{}", self.logs());
            }
            if let Ok(r) = get(self.addr("admin"), "/readyz").await {
                if r.status == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "omnigate not ready in 30s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client of the HTTPS listener trusting its development certificate.
    pub fn dev_client(&self) -> Client {
        let cert = std::fs::read_to_string(self.dir.path().join("state/dev-cert.pem"))
            .expect("the gateway's development certificate");
        Client::tls(self.addr("https"), &cert, "localhost", false)
    }

    /// An HTTP/2 client of the HTTPS listener (development certificate).
    pub fn dev_client_h2(&self) -> Client {
        let cert = std::fs::read_to_string(self.dir.path().join("state/dev-cert.pem"))
            .expect("the gateway's development certificate");
        Client::tls(self.addr("https"), &cert, "localhost", true)
    }

    /// Replaces the config file (placeholders rendered as at start).
    pub fn rewrite_config(&self, config: &str) {
        let mut t = config.to_string();
        for (k, v) in &self.ports {
            t = t.replace(&format!("{{{k}}}"), &v.to_string());
        }
        let t = t.replace("{dir}", &self.dir.path().display().to_string());
        std::fs::write(&self.config, t).expect("rewrite config");
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit and returns whether it exited cleanly.
    pub async fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "omnigate did not exit:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGHUP and waits for the `n`th successful reload.
    pub async fn reloaded(&self, n: f64) {
        self.signal("HUP");
        self.wait_metric(
            "omnigate_config_reloads_total{result=\"success\"}",
            n,
            Duration::from_secs(10),
        )
        .await;
    }

    /// Current value of a metric series (exact match of name and labels).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        metric_at(self.addr("admin"), series).await
    }

    /// Polls `series` until it equals `want` (health checks are asynchronous).
    pub async fn wait_metric(&self, series: &str, want: f64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.metric(series).await == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} never became {want} (now {:?})",
                self.metric(series).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- gateway log ----\n{}", self.logs());
        }
    }
}

/// A response read fully.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How to reach the gateway.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub tls: Option<(Arc<rustls::ClientConfig>, String)>,
    pub h2: bool,
}

impl Client {
    pub fn plain(addr: SocketAddr) -> Client {
        Client {
            addr,
            tls: None,
            h2: false,
        }
    }

    /// A TLS client trusting only `ca_pem`, sending `sni`, offering h2 if asked.
    pub fn tls(addr: SocketAddr, ca_pem: &str, sni: &str, h2: bool) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki(ca_pem) {
            roots.add(c).expect("add root");
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = if h2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Client {
            addr,
            tls: Some((Arc::new(cfg), sni.to_string())),
            h2,
        }
    }

    /// Sends one request on a new connection; returns the response head and a
    /// streaming body, plus the negotiated ALPN and the server certificate.
    pub async fn send_streaming(&self, req: Request<BoxBody>) -> Result<Streaming, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        match &self.tls {
            None => handshake(TokioIo::new(tcp), req, false, None, None).await,
            Some((cfg, sni)) => {
                let connector = tokio_rustls::TlsConnector::from(cfg.clone());
                let name = rustls::pki_types::ServerName::try_from(sni.clone())
                    .map_err(|e| e.to_string())?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("tls: {e}"))?;
                let (_, conn) = tls.get_ref();
                let alpn = conn
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                let cert = conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.as_ref().to_vec());
                let h2 = alpn.as_deref() == Some("h2");
                handshake(TokioIo::new(tls), req, h2, alpn, cert).await
            }
        }
    }

    /// `GET host path`, with a `Cookie` header if given.
    pub async fn get_with_cookie(&self, host: &str, path: &str, cookie: Option<&str>) -> Resp {
        let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
        self.send(request("GET", host, path, &headers, Bytes::new()))
            .await
            .unwrap_or_else(|e| panic!("GET {host}{path}: {e}"))
    }

    pub async fn send(&self, req: Request<BoxBody>) -> Result<Resp, String> {
        let s = self.send_streaming(req).await?;
        let (parts, body) = s.response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Resp {
            status: parts.status.as_u16(),
            version: parts.version,
            headers: parts.headers,
            body,
        })
    }

    pub async fn get(&self, host: &str, path: &str) -> Resp {
        let req = request("GET", host, path, &[], Bytes::new());
        self.send(req)
            .await
            .unwrap_or_else(|e| panic!("GET {host}{path}: {e}"))
    }
}

pub struct Streaming {
    pub response: Response<Incoming>,
    pub alpn: Option<String>,
    pub server_cert: Option<Vec<u8>>,
}

async fn handshake<T>(
    io: TokioIo<T>,
    req: Request<BoxBody>,
    h2: bool,
    alpn: Option<String>,
    server_cert: Option<Vec<u8>>,
) -> Result<Streaming, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let response = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = req;
        // HTTP/2 carries the host as :authority.
        if let Some(host) = req.headers_mut().remove(http::header::HOST) {
            let pq = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or("/".into());
            let uri = format!("https://{}{}", host.to_str().unwrap_or(""), pq);
            *req.uri_mut() = uri
                .parse()
                .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        }
        sender.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn.with_upgrades());
        sender.send_request(req).await.map_err(|e| e.to_string())?
    };
    Ok(Streaming {
        response,
        alpn,
        server_cert,
    })
}

/// Builds a request with a Host header and fixed body.
pub fn request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Request<BoxBody> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(
        Full::new(body)
            .map_err(|never: Infallible| match never {})
            .boxed(),
    )
    .expect("request")
}

/// GET over plain HTTP/1.1.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Resp, String> {
    let host = addr.to_string();
    Client::plain(addr)
        .send(request("GET", &host, path, &[], Bytes::new()))
        .await
}

fn rustls_pki(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("pem")
}

/// A test CA that issues leaf certificates.
pub struct TestCa {
    pub cert_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Omnigate Test CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("ca");
        TestCa {
            cert_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// (cert PEM, key PEM) for `names`.
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

/// A real upstream HTTP server on an ephemeral port.
pub struct Upstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub type UpResp = Response<BoxBody>;

impl Upstream {
    /// Serves `handler` (HTTP/1.1 with upgrades) until dropped.
    pub async fn start<F, Fut>(handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = UpResp> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let handler = handler.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let h = handler.clone();
                        async move { Ok::<_, Infallible>(h(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream { addr, task }
    }

    /// Answers every request with JSON naming `name` and echoing what it got.
    pub async fn echo(name: &'static str) -> Upstream {
        Upstream::start(move |req| async move { echo_response(name, &req) }).await
    }
}

pub fn echo_response(name: &str, req: &Request<Incoming>) -> UpResp {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::Value::String(v.to_str().unwrap_or("").to_string()),
            )
        })
        .collect();
    let body = serde_json::json!({
        "upstream": name,
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "headers": headers,
    });
    text_response(200, "application/json", body.to_string())
}

pub fn text_response(status: u16, content_type: &str, body: String) -> UpResp {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never: Infallible| match never {})
                .boxed(),
        )
        .expect("response")
}

/// Writes `text` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

/// A config with an HTTP listener, the admin listener (with token) and
/// `rest` appended (upstreams, routes, more listeners…). One worker thread:
/// many gateways run at once on a small machine.
pub fn config_with(rest: &str) -> String {
    format!(
        "server:\n  threads: 1\n  shutdown_grace: 2s\n  state_dir: {{dir}}/state\nadmin:\n  address: 127.0.0.1:{{admin}}\n  token: {ADMIN_TOKEN}\n{rest}"
    )
}

pub const HTTP_LISTENER: &str = "listeners:\n  - name: http\n    address: 127.0.0.1:{http}\n";

impl Upstream {
    /// Like [`Upstream::start`], over TLS with `cert`/`key` (PEM).
    pub async fn start_tls<F, Fut>(cert: &str, key: &str, handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = UpResp> + Send + 'static,
    {
        use rustls::pki_types::pem::PemObject;
        let chain = rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("cert");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handler = Arc::new(handler);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, acceptor) = (handler.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| {
                        let h = handler.clone();
                        async move { Ok::<_, Infallible>(h(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Upstream { addr, task }
    }

    /// An echo upstream that also counts the TCP connections it accepted.
    pub async fn counting(name: &'static str) -> (Upstream, Arc<std::sync::atomic::AtomicUsize>) {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let c = count.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req| async move {
                        Ok::<_, Infallible>(echo_response(name, &req))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (Upstream { addr, task }, count)
    }
}

/// What the browser saw after one step.
pub type Seen = serde_json::Value;

/// Runs a plan in headless Chromium (tests/node/run-steps.mjs) and returns
/// one observation per step. Screenshots go to tests/artifacts/<test>/ and are
/// checked to be non-empty PNGs. Fails loudly if Node or Chromium is missing.
pub async fn browse(test: &str, host_rules: Option<&str>, steps: serde_json::Value) -> Vec<Seen> {
    browse_with(test, host_rules, None, steps).await
}

/// Like [`browse`] with a viewport (`{"width": 375, "height": 740}` for a
/// phone) and optionally the browser's language (`"locale": "de-DE"`).
pub async fn browse_with(
    test: &str,
    host_rules: Option<&str>,
    viewport: Option<serde_json::Value>,
    steps: serde_json::Value,
) -> Vec<Seen> {
    use tokio::io::AsyncWriteExt;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let artifacts = root.join("tests/artifacts").join(test);
    let _ = std::fs::remove_dir_all(&artifacts);
    let plan = serde_json::json!({
        "artifacts": artifacts,
        "hostRules": host_rules,
        "viewport": viewport,
        "steps": steps,
    });
    let script = root.join("tests/node/run-steps.mjs");
    assert!(
        root.join("tests/node/node_modules/playwright-core")
            .is_dir(),
        "playwright-core is not installed: run tests/run (it runs npm ci in tests/node)"
    );
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is required for browser tests (tests/run installs it)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(plan.to_string().as_bytes())
        .await
        .expect("write plan");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("browser plan took over 90 s")
        .expect("browser run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "browser driver failed ({e}):\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let results = report["results"].as_array().cloned().unwrap_or_default();
    assert!(
        report["ok"] == true,
        "browser plan failed: {}\nlast page: {:#}",
        report["error"],
        results.last().cloned().unwrap_or_default()
    );
    for r in &results {
        if let Some(found) = r["axe"].as_array() {
            assert!(
                found.is_empty(),
                "accessibility (axe-core, WCAG 2.1 A/AA) on {}: {:#}",
                r["url"],
                r["axe"]
            );
        }
        if let Some(shot) = r["screenshot"].as_str() {
            let bytes = std::fs::read(shot).unwrap_or_else(|e| panic!("screenshot {shot}: {e}"));
            assert!(
                bytes.len() > 1000 && bytes.starts_with(b"\x89PNG"),
                "screenshot {shot} is empty or not a PNG"
            );
        }
    }
    results
}

/// A config with the HTTPS listener (dev certificate) plus `listeners`, the
/// provider `idp` with browser login (`WEB_CLIENT`, display name "Test IdP")
/// plus `login` settings (e.g. `, logout_at_provider: true`), then `rest`
/// (more provider lines indented by 4, sessions, upstreams, routes).
pub fn login_config(idp: &Idp, listeners: &str, login: &str, rest: &str) -> String {
    config_with(&format!(
        "listeners:
  - name: https
    address: 127.0.0.1:{{https}}
    tls: {{ certificates: [] }}
{listeners}providers:
  - name: idp
    issuer: {}
    login: {{ client_id: {}, client_secret: {}, display_name: Test IdP{login} }}
{rest}",
        idp.issuer, WEB_CLIENT.0, WEB_CLIENT.1
    ))
}

/// `providers:` with `idp` accepting bearer tokens for the test audience.
pub fn bearer_provider(idp: &Idp) -> String {
    format!(
        "providers:\n  - name: idp\n    issuer: {}\n    bearer: {{ audiences: [\"{IDP_AUDIENCE}\"] }}\n",
        idp.issuer
    )
}

/// `GET path` on `host` through `c` with `Authorization: Bearer token`.
pub async fn get_bearer(c: &Client, host: &str, path: &str, token: &str) -> Resp {
    let auth = format!("Bearer {token}");
    c.send(request(
        "GET",
        host,
        path,
        &[("authorization", &auth)],
        Bytes::new(),
    ))
    .await
    .unwrap()
}

/// A config with the HTTP listener, `extra` top-level settings, the provider
/// `idp` accepting bearer tokens, and `/api/me` (required) to `api`.
pub fn bearer_me_config(idp: &Idp, api: &Upstream, extra: &str) -> String {
    config_with(&format!(
        "{HTTP_LISTENER}{extra}{}upstreams:
  api: {{ addresses: [\"{}\"] }}
routes:
  - {{ name: me, path_prefix: /api/me, upstream: api, kind: api, access: required }}
",
        bearer_provider(idp),
        api.addr
    ))
}

/// `GET /api/me` through `c` with a fresh RS256 token of `user` from `idp`.
pub async fn get_me(c: &Client, idp: &Idp, user: &str) -> Resp {
    let token = idp.sign(idp.user_claims(user, "", 300), "RS256").await;
    let auth = format!("Bearer {token}");
    c.send(request(
        "GET",
        "api.test",
        "/api/me",
        &[("authorization", &auth)],
        Bytes::new(),
    ))
    .await
    .unwrap()
}

/// The `X-Customer-Id` an echo upstream reports on a page the browser shows.
pub fn customer_id_in(page_text: &str) -> String {
    let start = page_text.find('{').expect("echo JSON on the page");
    let v: serde_json::Value = serde_json::from_str(&page_text[start..]).expect("JSON");
    v["headers"]["x-customer-id"]
        .as_str()
        .expect("x-customer-id")
        .to_string()
}

/// Percent-encodes a query parameter value.
pub fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Ports for a gateway and a provider whose browser client returns to
/// `https://shop.test:<https port>`: the provider binds an ephemeral port
/// after the gateway's were reserved, so it could take one of them; then
/// both are chosen again.
pub async fn ports_and_idp() -> (HashMap<&'static str, u16>, Idp) {
    loop {
        let ports = reserve_ports();
        let idp = Idp::start_with_web_client(Some(&format!(
            "https://shop.test:{}/_auth/callback/idp",
            ports["https"]
        )))
        .await;
        if !ports.values().any(|p| *p == idp.port) {
            return (ports, idp);
        }
    }
}

/// A real OpenID provider (tests/node/idp.mjs, npm oidc-provider) on 127.0.0.1.
pub struct Idp {
    child: tokio::process::Child,
    pub issuer: String,
    pub port: u16,
    pub keys_file: PathBuf,
    _dir: Arc<tempfile::TempDir>,
    clients: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- OpenID provider log ----\n{}", self.logs());
        }
    }
}

/// The audience of JWT access tokens the test provider issues.
pub const IDP_AUDIENCE: &str = "https://api.omnigate.test";
pub const SERVICE_CLIENT: (&str, &str) = ("svc", "svc-secret-0123456789");
pub const WEB_CLIENT: (&str, &str) = ("web", "web-secret-0123456789");

impl Idp {
    /// Kills the provider (a provider that went down); its port refuses.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts a provider with one client-credentials client (`SERVICE_CLIENT`).
    pub async fn start() -> Idp {
        Idp::start_with_web_client(None).await
    }

    /// Also registers the browser client `WEB_CLIENT` with this redirect URI
    /// (its `/_auth/signed-out` sibling as post-logout redirect).
    pub async fn start_with_web_client(redirect_uri: Option<&str>) -> Idp {
        Idp::start_with_web_client_meta(redirect_uri, serde_json::json!({})).await
    }

    /// As `start_with_web_client`, with `extra` client metadata merged in
    /// (e.g. `backchannel_logout_uri`).
    pub async fn start_with_web_client_meta(
        redirect_uri: Option<&str>,
        extra: serde_json::Value,
    ) -> Idp {
        let mut clients = serde_json::json!([{
            "client_id": SERVICE_CLIENT.0,
            "client_secret": SERVICE_CLIENT.1,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
            "token_endpoint_auth_method": "client_secret_basic",
        }]);
        if let Some(uri) = redirect_uri {
            let signed_out = uri.replace("/_auth/callback/idp", "/_auth/signed-out");
            let mut web = serde_json::json!({
                "client_id": WEB_CLIENT.0,
                "client_secret": WEB_CLIENT.1,
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "redirect_uris": [uri],
                "post_logout_redirect_uris": [signed_out],
                "token_endpoint_auth_method": "client_secret_basic",
                "id_token_signed_response_alg": "ES256",
            });
            for (k, v) in extra.as_object().expect("client metadata object") {
                web[k] = v.clone();
            }
            clients.as_array_mut().expect("array").push(web);
        }
        let clients = clients.to_string();
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let keys_file = dir.path().join("idp-keys.json");
        Idp::spawn(None, &keys_file, &clients, false, dir).await
    }

    async fn spawn(
        port: Option<u16>,
        keys: &Path,
        clients: &str,
        rotate: bool,
        dir: Arc<tempfile::TempDir>,
    ) -> Idp {
        use tokio::io::AsyncBufReadExt;
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert!(
            root.join("tests/node/node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: run tests/run (it runs npm ci in tests/node)"
        );
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(root.join("tests/node/idp.mjs"))
            .env("IDP_KEYS", keys)
            .env("IDP_CLIENTS", clients)
            .env("IDP_AUDIENCE", IDP_AUDIENCE)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.path().join("idp.log"))
                    .expect("idp log"),
            ))
            .kill_on_drop(true);
        if let Some(p) = port {
            cmd.env("IDP_PORT", p.to_string());
        }
        if rotate {
            cmd.env("IDP_ROTATE", "1");
        }
        let mut child = cmd
            .spawn()
            .expect("node is required (tests/run installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("OpenID provider did not start in 20 s")
            .expect("read")
            .expect("OpenID provider exited");
        let v: serde_json::Value = serde_json::from_str(&line).expect("provider start line");
        // Keep reading: the provider logs to stdout and dies of EPIPE if nobody does.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Idp {
            child,
            issuer: v["issuer"].as_str().expect("issuer").to_string(),
            port: v["port"].as_u64().expect("port") as u16,
            keys_file: keys.to_path_buf(),
            _dir: dir,
            clients: clients.to_string(),
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("idp.log")).unwrap_or_default()
    }

    /// Restarts on the same port and issuer with a new signing key in front
    /// of the old ones (both published).
    pub async fn rotate(mut self) -> Idp {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
        Idp::spawn(
            Some(self.port),
            &self.keys_file.clone(),
            &self.clients.clone(),
            true,
            self._dir.clone(),
        )
        .await
    }

    /// A real access token (JWT) from the token endpoint, client credentials grant.
    pub async fn client_credentials(&self, scope: &str) -> String {
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().expect("addr");
        let basic = base64_encode(&format!("{}:{}", SERVICE_CLIENT.0, SERVICE_CLIENT.1));
        let body = format!(
            "grant_type=client_credentials&scope={}",
            scope.replace(' ', "%20")
        );
        let r = Client::plain(addr)
            .send(request(
                "POST",
                &addr.to_string(),
                "/token",
                &[
                    ("authorization", &format!("Basic {basic}")),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                Bytes::from(body),
            ))
            .await
            .expect("token request");
        assert_eq!(r.status, 200, "token endpoint: {}", r.text());
        r.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// A token with chosen claims, signed with the provider's current key.
    pub async fn sign(&self, claims: serde_json::Value, alg: &str) -> String {
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().expect("addr");
        let body = serde_json::json!({ "claims": claims, "alg": alg }).to_string();
        let r = Client::plain(addr)
            .send(request(
                "POST",
                &addr.to_string(),
                "/_test/sign",
                &[],
                Bytes::from(body),
            ))
            .await
            .expect("sign");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["token"].as_str().expect("token").to_string()
    }

    /// Claims of a user access token for `sub`, valid for `ttl` seconds.
    pub fn user_claims(&self, sub: &str, scope: &str, ttl: i64) -> serde_json::Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        serde_json::json!({
            "iss": self.issuer, "sub": sub, "aud": IDP_AUDIENCE, "iat": now, "exp": now + ttl,
            "scope": scope, "email": format!("{sub}@example.test"), "email_verified": true, "name": format!("Test {sub}"),
        })
    }
}

pub fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A real SMTP server (tests/py/smtp_sink.py, Python aiosmtpd) on 127.0.0.1
/// that keeps every accepted message as a file.
pub struct MailSink {
    child: tokio::process::Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl MailSink {
    pub async fn start() -> MailSink {
        MailSink::start_failing_first(0).await
    }

    /// A sink that refuses the first `n` messages with 451 (try again later).
    pub async fn start_failing_first(n: u32) -> MailSink {
        use tokio::io::AsyncBufReadExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/py/smtp_sink.py");
        let mut child = tokio::process::Command::new("python3")
            .arg(&script)
            .arg(dir.path())
            .env("SMTP_FAIL_FIRST", n.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 is required for mail tests (tests/run installs aiosmtpd)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("SMTP sink did not start within 10 s (is aiosmtpd installed? tests/setup.sh installs it)")
        .expect("read SMTP sink port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("SMTP sink said {line:?}"));
        MailSink { child, port, dir }
    }

    /// The folder the browser driver reads mails from.
    pub fn path(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// Every mail received so far to `to`, oldest first (quoted-printable undone).
    pub fn mails_to(&self, to: &str) -> Vec<String> {
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(self.dir.path())
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .filter_map(|p| Some((p.file_stem()?.to_str()?.parse().ok()?, p)))
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, p)| std::fs::read_to_string(p).ok())
            .map(|m| unquote(&m))
            .filter(|m| m.starts_with(&format!("X-Envelope-To: {to}\r\n")))
            .collect()
    }

    /// Waits for the `n`-th mail (1-based) to `to`.
    pub async fn wait_mail(&self, to: &str, n: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let all = self.mails_to(to);
            if all.len() >= n {
                return all[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no mail #{n} to {to} within {within:?}; have {}",
                all.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The config lines of this sink as the gateway's mail channel.
    pub fn accounts_config(&self, public_url: &str, extra: &str) -> String {
        format!(
            "accounts:
  passwords: true
  public_url: {public_url}
  argon2: {{ memory_kib: 19456, iterations: 2, parallelism: 1 }}
  mail:
    from: \"Shop <no-reply@shop.test>\"
    smtp: {{ host: 127.0.0.1, port: {}, tls: none }}
{extra}",
            self.port
        )
    }
}

/// Quoted-printable soft line breaks and escapes undone.
pub fn unquote(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let b = joined.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first link in `mail` whose path starts with `path`.
pub fn link_in(mail: &str, path: &str) -> String {
    mail.split(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>')
        .find(|w| w.starts_with("http") && w.contains(path))
        .unwrap_or_else(|| panic!("no {path} link in mail:\n{mail}"))
        .to_string()
}

/// Cookies as a browser keeps them: host-only or for a domain and its
/// subdomains; `Max-Age=0` deletes.
#[derive(Debug, Default, Clone)]
pub struct Jar {
    /// (host or domain, is a domain cookie, name, value)
    cookies: Vec<(String, bool, String, String)>,
}

impl Jar {
    /// Keeps the `Set-Cookie` headers of a response from `host`.
    pub fn store(&mut self, host: &str, r: &Resp) {
        for v in r
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            let mut parts = v.split(';').map(str::trim);
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let mut scope = (host.to_string(), false);
            let mut gone = false;
            for attr in parts {
                let lower = attr.to_ascii_lowercase();
                if let Some(d) = lower.strip_prefix("domain=") {
                    scope = (d.trim_start_matches('.').to_string(), true);
                }
                if lower == "max-age=0" {
                    gone = true;
                }
            }
            self.cookies
                .retain(|(h, d, n, _)| !(h == &scope.0 && *d == scope.1 && n == name));
            if !gone {
                self.cookies
                    .push((scope.0, scope.1, name.to_string(), value.to_string()));
            }
        }
    }

    /// Adds a host-only `name=value` cookie for `host`.
    pub fn add(&mut self, host: &str, pair: &str) {
        if let Some((n, v)) = pair.split_once('=') {
            self.cookies
                .push((host.to_string(), false, n.to_string(), v.to_string()));
        }
    }

    /// Adds a `name=value` cookie for `domain` and its subdomains.
    pub fn add_domain(&mut self, domain: &str, pair: &str) {
        if let Some((n, v)) = pair.split_once('=') {
            self.cookies
                .push((domain.to_string(), true, n.to_string(), v.to_string()));
        }
    }

    /// The `Cookie` header a browser sends to `host`.
    pub fn header(&self, host: &str) -> Option<String> {
        let sent: Vec<String> = self
            .cookies
            .iter()
            .filter(|(h, d, _, _)| h == host || (*d && host.ends_with(&format!(".{h}"))))
            .map(|(_, _, n, v)| format!("{n}={v}"))
            .collect();
        (!sent.is_empty()).then(|| sent.join("; "))
    }
}

/// Follows the gateway's redirects from `start` as a browser does: each
/// `Location` resolved against the current URL (WHATWG, the `url` crate),
/// cookies kept per host. Stops at a response that is not a redirect, or at
/// a URL whose host is not in `gateway_hosts` (the browser would leave).
/// Returns every URL visited (the last is where the browser lands) and the
/// last response from the gateway.
pub async fn follow(
    c: &Client,
    jar: &mut Jar,
    start: &str,
    gateway_hosts: &[&str],
) -> (Vec<url::Url>, Resp) {
    let mut at = url::Url::parse(start).expect("start URL");
    let mut visited = vec![at.clone()];
    for _ in 0..12 {
        let host = at.host_str().unwrap_or("").to_string();
        let authority = match at.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let pq = match at.query() {
            Some(q) => format!("{}?{q}", at.path()),
            None => at.path().to_string(),
        };
        let cookie = jar.header(&host);
        let r = c.get_with_cookie(&authority, &pq, cookie.as_deref()).await;
        jar.store(&host, &r);
        let Some(loc) = r
            .header("location")
            .filter(|_| (300..400).contains(&r.status))
        else {
            return (visited, r);
        };
        at = at.join(loc).expect("a Location a browser can follow");
        visited.push(at.clone());
        if !gateway_hosts.contains(&at.host_str().unwrap_or("")) {
            return (visited, r);
        }
    }
    panic!("redirect loop: {visited:?}");
}

/// Sends `GET raw_target` (exactly as written, no normalisation) over plain
/// HTTP/1.1 and returns the status and body.
pub async fn raw_get(
    addr: SocketAddr,
    host: &str,
    raw_target: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("GET {raw_target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Current value of a metric series on the admin listener at `admin`.
pub async fn metric_at(admin: SocketAddr, series: &str) -> Option<f64> {
    let r = get(admin, "/metrics").await.ok()?;
    r.text()
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|v| v.strip_prefix(' '))
                .map(str::to_string)
        })
        .and_then(|v| v.trim().parse().ok())
}
