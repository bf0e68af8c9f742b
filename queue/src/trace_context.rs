//! W3C trace context in message headers, so that one job is one trace across processes: the
//! publisher writes `traceparent` (and `tracestate`) from its current span, the consumer makes
//! its span a child of what it finds. With no tracing pipeline installed both are no-ops.

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::Headers;

/// The header names trace context uses.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

struct HeaderInjector<'a>(&'a mut Headers);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct HeaderExtractor<'a>(&'a Headers);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Writes the context of `span` into `headers`, replacing any context already there.
pub fn inject(span: &tracing::Span, headers: &mut Headers) {
    for h in TRACE_HEADERS {
        headers.remove(h);
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Makes `span` a child of the context in `headers`, when there is one.
pub fn adopt(span: &tracing::Span, headers: &Headers) {
    if !headers.contains_key(TRACE_HEADERS[0]) {
        return;
    }
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(parent);
}
