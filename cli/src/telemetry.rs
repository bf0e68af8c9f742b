//! Logs and traces. `tracing` events go to stderr as text or JSON lines (around the live
//! progress display, see `console.rs`), in colour only on a terminal and without `NO_COLOR`.
//! Which lines: `RUST_LOG` when set; else this program's own at INFO (`-q`: WARN, `-v`:
//! DEBUG), other crates' (the HTTP, AMQP and GitHub libraries) only from `-vv`, at DEBUG
//! (`-vvv`: everything at TRACE). When `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, spans are also exported over OTLP/HTTP
//! (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`, the default, or `http/json`) with the
//! resource the standard `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` describe, through a
//! batch exporter on its own thread (the blocking HTTP client: the async one panics there). W3C
//! trace context is always propagated in message headers.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::console::LogFormat;
use crate::console::{say, Level};

/// Keeps the trace pipeline; [`Telemetry::shutdown`] sends what is buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still buffered (at most a few seconds) and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                say(
                    Level::Warn,
                    "traces",
                    format!("warning: could not send the last spans: {e}"),
                );
            }
        }
    }
}

/// Colour codes only on a terminal, and never with `NO_COLOR` set (<https://no-color.org>).
fn colour_wanted() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn endpoint_set() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// How many lines of logs: `-q`, nothing, `-v`, `-vv`, `-vvv`.
#[derive(Debug, Clone, Copy)]
pub struct Verbosity {
    pub quiet: bool,
    pub verbose: u8,
}

impl Verbosity {
    /// The filter when `RUST_LOG` does not set one. Other crates log only from `-vv`: their
    /// errors (a connection the program retries, a GitHub call it reports itself) are this
    /// program's to tell, once, in its own words.
    fn directives(self, prints_job_lines: bool) -> String {
        let ours = match (self.quiet, self.verbose) {
            (true, _) => "image_mirror=warn",
            (false, 0) => "image_mirror=info",
            (false, 1) => "image_mirror=debug",
            (false, 2) => "debug",
            (false, _) => "trace",
        };
        // `run` and `add-tag` show each finished job themselves: the worker's own line per
        // job would say it twice.
        if prints_job_lines && !self.quiet && self.verbose == 0 {
            format!("{ours},image_mirror_worker::job_runner=error,image_mirror_worker::job_outcome=error")
        } else {
            ours.to_owned()
        }
    }
}

/// Sets up logging, and tracing when an OTLP endpoint is configured. `role` names the service
/// when `OTEL_SERVICE_NAME` does not; `prints_job_lines` when the command shows each finished
/// job itself (`run`, `add-tag`).
pub fn init(
    format: LogFormat,
    verbosity: Verbosity,
    role: &str,
    prints_job_lines: bool,
) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let default = verbosity.directives(prints_job_lines);
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&default));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(crate::console::StderrSink)
        .with_ansi(colour_wanted());
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let provider = if endpoint_set() {
        match provider(role) {
            Ok(p) => Some(p),
            Err(e) => {
                say(
                    Level::Warn,
                    "traces",
                    format!("warning: traces are off: {e}"),
                );
                None
            }
        }
    } else {
        None
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("image-mirror"))
            .with_filter(EnvFilter::new("info"))
    });
    let registry = tracing_subscriber::registry()
        .with(fmt.with_filter(filter()))
        .with(otel);
    if registry.try_init().is_err() {
        say(
            Level::Warn,
            "logging",
            "warning: logging was already set up",
        );
    }
    Telemetry { provider }
}

fn provider(role: &str) -> Result<SdkTracerProvider, String> {
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Ok("http/json") => Protocol::HttpJson,
        Ok("http/protobuf") | Err(_) => Protocol::HttpBinary,
        Ok(other) => {
            return Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported (http/protobuf or http/json)"
        ))
        }
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(format!("image-mirror-{role}"));
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}
