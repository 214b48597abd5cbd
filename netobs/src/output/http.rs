//! The HTTP endpoint of `watch` (axum on the watch's tokio runtime):
//!
//! - `/metrics`: Prometheus text 0.0.4, or OpenMetrics 1.0 when the
//!   `Accept` header asks for it (a Prometheus server does). The kernel
//!   counters are read during the request (see [`super::metrics`]).
//! - `/top`: the 20 largest findings, a JSON array of `finding` records
//!   (docs/json-schema.md), as the event loop last handed them over.
//! - `/healthz`: 200 while the event loop beats, 503 once it has not for
//!   [`HEALTH_STALE_MS`]: a liveness probe restarts a stuck `watch`.
//!
//! The server runs on the runtime's worker thread while the event loop runs
//! on the thread that called `block_on`, so a scrape is answered even while
//! the loop is busy (a flood being drained, a slow join): it shares no lock
//! with the loop's work.

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context as _, Result};
use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;

use super::metrics::{Format, HEALTH_STALE_MS, Metrics};
use crate::health::{self, Op};

/// Binds `addr` now, so a busy port fails before anything is attached.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot serve metrics on {addr} (in use? pick another with --metrics-addr, or --no-metrics)")
    })
}

/// Serves `/metrics`, `/top` and `/healthz` on `listener` until the runtime
/// ends. Connections that arrived since [`bind`] are waiting in the backlog.
pub(crate) fn spawn(listener: TcpListener, metrics: Arc<Metrics>) {
    let app = router(metrics);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            health::transient(Op::Output, &format_args!("the metrics server stopped: {e}"));
        }
    });
}

fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/top", get(top))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .with_state(metrics)
}

async fn scrape(State(m): State<Arc<Metrics>>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let body = m.encode(format);
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

async fn top(State(m): State<Arc<Metrics>>) -> Response {
    let body: String = m.live.top().to_string();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn healthz(State(m): State<Arc<Metrics>>) -> Response {
    let age = m.live.heartbeat.age_ms();
    if age > HEALTH_STALE_MS {
        let body = format!("stalled: the event loop last ran {:.1} s ago\n", age as f64 / 1000.0);
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "netobs serves /metrics, /top and /healthz\n").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{kernel::Counters, output::metrics::CounterSource};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    struct Empty;
    impl CounterSource for Empty {
        fn read(&self) -> anyhow::Result<Counters> {
            Ok(Counters::default())
        }
    }

    async fn get(addr: SocketAddr, path: &str, accept: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[test]
    fn serves_metrics_top_and_health() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async {
            let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (m, rec) = Metrics::new(Empty);
            let m2 = m.clone();
            spawn(listener, m);
            rec.set_top("[]".into());

            let r = get(addr, "/metrics", "*/*").await;
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
            assert!(r.contains("text/plain; version=0.0.4"), "{r}");
            assert!(r.contains("# HELP netobs_icmp_errors_total"), "{r}");
            let r = get(addr, "/metrics", "application/openmetrics-text;version=1.0.0").await;
            assert!(r.contains("application/openmetrics-text") && r.contains("# EOF"), "{r}");
            let r = get(addr, "/top", "*/*").await;
            assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("[]"), "{r}");
            let r = get(addr, "/healthz", "*/*").await;
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
            m2.live.heartbeat.stall(HEALTH_STALE_MS + 1000);
            let r = get(addr, "/healthz", "*/*").await;
            assert!(r.starts_with("HTTP/1.1 503") && r.contains("stalled"), "{r}");
            rec.beat();
            let r = get(addr, "/healthz", "*/*").await;
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
            let r = get(addr, "/nothing", "*/*").await;
            assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        });
    }

    #[test]
    fn a_busy_port_is_named() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let first = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let addr = first.local_addr().unwrap();
            let e = bind(addr).await.unwrap_err();
            assert!(format!("{e:#}").contains(&addr.to_string()), "{e:#}");
        });
    }
}
