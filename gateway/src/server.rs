//! Process assembly: logging, the control runtime (admin listener, health
//! checks, demo upstreams, reload triggers), and the Pingora server with one
//! worker shard per thread serving every customer listener (see `shard`), or,
//! with `work_stealing: true`, one work-stealing Pingora service per listener.
//! Owns start-up and shutdown order.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server, ShutdownWatch};
use pingora_core::services::background::{background_service, BackgroundService};

use crate::config::model::Config;
use crate::edge::Gateway;
use crate::state::App;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    #[error("cannot start: {0}")]
    Io(String),
}

/// Runs the gateway until SIGTERM (graceful) or SIGINT (fast).
pub fn run(config_path: &Path) -> Result<(), StartError> {
    let config = crate::config::load(config_path)?;
    let _log_guard = init_logging(&config.log);
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();

    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("omnigate-control")
        .enable_all()
        .build()
        .map_err(|e| StartError::Io(format!("control runtime: {e}")))?;
    let app = control.block_on(async {
        let app = App::start(config_path, config.clone()).await.map_err(StartError::Io)?;
        if let Some(demo) = &config.demo {
            crate::demo::start(demo)
                .await
                .map_err(|e| StartError::Io(format!("demo upstreams: {e}")))?;
        }
        if let Some(admin) = &config.admin {
            crate::admin::start(app.clone(), admin.address)
                .await
                .map_err(|e| StartError::Io(format!("admin listener {}: {e}", admin.address)))?;
            tracing::info!(address = %admin.address, "admin listener up: /healthz /readyz /metrics");
        }
        tokio::spawn(reload_on_sighup(app.clone()));
        app.spawn_health_probe();
        app.spawn_key_rotation();
        app.spawn_privacy_worker();
        let settings = app.clone();
        tokio::spawn(crate::events::run(crate::events::Delivery {
            directory: app.auth.directory().clone(),
            settings: Box::new(move || settings.snapshot().config.events.clone()),
            given_up: app.metrics.webhook_given_up.clone(),
            deliveries: app.metrics.webhook_deliveries.clone(),
        }));
        Ok::<_, StartError>(app)
    })?;

    let threads = config.server.threads;
    let sharded = !config.server.work_stealing;
    // Bound here, in the control runtime, so a taken port is a clear start
    // error: one socket per worker and listener.
    let sockets = if sharded {
        control.block_on(async {
            config
                .listeners
                .iter()
                .map(|l| {
                    crate::shard::bind(l.address, threads).map_err(|e| {
                        StartError::Io(format!("listener `{}` on {}: {e}", l.name, l.address))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })?
    } else {
        Vec::new()
    };

    let mut conf = ServerConf {
        // Shards are single-threaded services; `threads` counts the shards.
        threads: if sharded { 1 } else { threads },
        work_stealing: config.server.work_stealing,
        grace_period_seconds: Some(config.server.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.server.shutdown_grace.as_secs()),
        // Each shard keeps its own pool: the configured size is split among them.
        upstream_keepalive_pool_size: if sharded {
            config.server.upstream_keepalive_pool.div_ceil(threads)
        } else {
            config.server.upstream_keepalive_pool
        },
        ..ServerConf::default()
    };
    conf.max_retries = 16;
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let conf = server.configuration.clone();
    let mut acceptors = Vec::new();
    for l in &config.listeners {
        let tls = tls_settings(&app, l)?;
        tracing::info!(listener = %l.name, address = %l.address, tls = l.tls.is_some(), "customer listener");
        if sharded {
            acceptors.push(tls.map(|settings| Arc::new(settings.build())));
            continue;
        }
        let gateway = Gateway::new(app.clone(), l.clone());
        let mut service = pingora_proxy::http_proxy_service_with_name(
            &conf,
            gateway,
            &format!("listener {}", l.name),
        );
        let addr = l.address.to_string();
        match tls {
            None => service.add_tcp(&addr),
            Some(settings) => service.add_tls_with_settings(&addr, None, settings),
        }
        server.add_service(service);
    }
    if sharded {
        for shard in shards(&app, &conf, &config.listeners, sockets, &acceptors)? {
            server.add_service(shard);
        }
    }
    server.add_service(background_service("lifecycle", Lifecycle(app.clone())));
    server.run(RunArgs::default());
    // What upstreams received since the last flush is not lost at shutdown.
    control.block_on(async {
        let flushed = crate::privacy::worker::flush(&app, 0);
        if tokio::time::timeout(std::time::Duration::from_secs(5), flushed)
            .await
            .is_err()
        {
            tracing::warn!("data map not flushed within 5 s at shutdown");
        }
    });
    tracing::info!("omnigate stopped");
    drop(control);
    Ok(())
}

/// The rustls settings of a TLS listener (certificates by SNI, ALPN h2).
fn tls_settings(
    app: &App,
    l: &crate::config::model::Listener,
) -> Result<Option<TlsSettings>, StartError> {
    let Some(tls) = &l.tls else { return Ok(None) };
    let resolver = app
        .resolvers
        .get(&l.name)
        .cloned()
        .ok_or_else(|| StartError::Io(format!("listener `{}` has no certificates", l.name)))?;
    let mut settings = TlsSettings::intermediate("", "")
        .map_err(|e| StartError::Io(format!("listener `{}`: {e}", l.name)))?;
    settings.set_cert_resolver(resolver);
    if tls.http2 {
        settings.enable_h2();
    }
    Ok(Some(settings))
}

/// One worker shard per thread, each serving every listener on its own
/// socket (`sockets[listener][worker]`) with its own proxy and upstream pool.
fn shards(
    app: &Arc<App>,
    conf: &Arc<ServerConf>,
    listeners: &[crate::config::model::Listener],
    mut sockets: Vec<Vec<std::net::TcpListener>>,
    acceptors: &[Option<Arc<pingora_core::listeners::tls::Acceptor>>],
) -> Result<Vec<crate::shard::Shard>, StartError> {
    let threads = app.startup.server.threads;
    app.accept_loops_expected.store(
        threads * listeners.len(),
        std::sync::atomic::Ordering::Relaxed,
    );
    (0..threads)
        .map(|i| {
            let worker = i.to_string();
            let mut served = Vec::new();
            for ((l, sockets), tls) in listeners.iter().zip(&mut sockets).zip(acceptors) {
                let socket = sockets.pop().ok_or_else(|| {
                    StartError::Io(format!("listener `{}`: no socket for worker {i}", l.name))
                })?;
                let gateway = Gateway::new(app.clone(), l.clone());
                let metrics = &app.metrics;
                served.push(crate::shard::ShardListener {
                    accepted: metrics
                        .connections_accepted
                        .with_label_values(&[l.name.as_str(), worker.as_str()]),
                    handshake_failures: metrics
                        .tls_handshake_failures
                        .with_label_values(&[l.name.as_str()]),
                    name: l.name.clone(),
                    socket,
                    tls: tls.clone(),
                    proxy: Arc::new(pingora_proxy::http_proxy(conf, gateway)),
                    app: app.clone(),
                });
            }
            Ok(crate::shard::Shard {
                name: format!("worker {i}"),
                listeners: served,
            })
        })
        .collect()
}

/// Marks the gateway not ready as soon as shutdown begins, so load balancers
/// stop sending traffic during the grace period.
struct Lifecycle(Arc<App>);

#[async_trait]
impl BackgroundService for Lifecycle {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if readable(self.0.startup.log.format) {
            let app = self.0.clone();
            tokio::spawn(async move {
                use std::sync::atomic::Ordering::Relaxed;
                // Once every worker accepts on every listener (or after 5 s).
                for _ in 0..100 {
                    if app.accept_loops.load(Relaxed) >= app.accept_loops_expected.load(Relaxed) {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                println!("{}", ready_line(&app.startup));
            });
        }
        let _ = shutdown.changed().await;
        self.0.set_shutting_down();
        tracing::info!("shutdown started: readiness now reports not ready");
    }
}

async fn reload_on_sighup(app: Arc<App>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP; reload only via POST /admin/reload");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading configuration");
        let _ = app.reload().await;
    }
}

/// Whether log lines are written for people: `text`, or `auto` on a terminal.
fn readable(format: crate::config::model::LogFormat) -> bool {
    use crate::config::model::LogFormat;
    use std::io::IsTerminal;
    match format {
        LogFormat::Text => true,
        LogFormat::Json => false,
        LogFormat::Auto => std::io::stdout().is_terminal(),
    }
}

/// Logs on stdout through a non-blocking writer: JSON, or readable lines
/// (`readable`). `RUST_LOG` overrides the configured level.
fn init_logging(log: &crate::config::model::Log) -> tracing_appender::non_blocking::WorkerGuard {
    let text = readable(log.format);
    // The appender's thread drains every queued line into the buffer and then
    // flushes, so under load one write(2) carries many lines, and at rest each
    // line is written at once.
    let stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let (writer, guard) = tracing_appender::non_blocking(stdout);
    crate::accesslog::install(writer.clone(), text);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.level));
    let fmt = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if text {
        fmt.compact()
            .with_target(false)
            .with_ansi(log.format == crate::config::model::LogFormat::Auto)
            .with_writer(writer)
            .try_init()
    } else {
        fmt.json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(writer)
            .try_init()
    };
    guard
}

/// The line a person starting Omnigate on a terminal reads first: where to
/// open it, where the admin listener and the demo's mail outbox are. Pure.
pub fn ready_line(config: &Config) -> String {
    let url = |l: &crate::config::model::Listener| {
        let scheme = if l.tls.is_some() { "https" } else { "http" };
        let host = if l.address.ip().is_unspecified() || l.address.ip().is_loopback() {
            "localhost".to_string()
        } else {
            l.address.ip().to_string()
        };
        format!("{scheme}://{host}:{}/", l.address.port())
    };
    let open: Vec<String> = config.listeners.iter().map(url).collect();
    let mut line = format!("Omnigate is ready: open {}", open.join(" or "));
    if let Some(a) = &config.admin {
        line.push_str(&format!(
            " · admin http://{}/ (metrics at /metrics{})",
            a.address,
            if a.token.is_some() {
                ", console at /admin/console"
            } else {
                "; no admin.token, so write endpoints are off"
            }
        ));
    }
    if let (Some(_), Some(first)) = (&config.demo, config.listeners.first()) {
        line.push_str(&format!(" · demo mail outbox {}_demo/mail", url(first)));
    }
    line
}

/// Validates a config and returns every problem, as `omnigate check` does.
pub fn check(config_path: &Path) -> Result<Config, crate::config::ConfigErrors> {
    crate::config::load(config_path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ready_line_says_where_to_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "listeners:\n  - name: http\n    address: 0.0.0.0:8080\n  - name: https\n    address: 127.0.0.1:8443\n    tls: { certificates: [] }\nadmin: { address: 127.0.0.1:9090 }\nupstreams:\n  app: { addresses: [127.0.0.1:9000] }\ndemo: { enabled: true }\n",
        )
        .unwrap();
        let config = crate::config::load(&path).unwrap();
        assert_eq!(
            super::ready_line(&config),
            "Omnigate is ready: open http://localhost:8080/ or https://localhost:8443/ · admin http://127.0.0.1:9090/ (metrics at /metrics; no admin.token, so write endpoints are off) · demo mail outbox http://localhost:8080/_demo/mail"
        );
    }
}
