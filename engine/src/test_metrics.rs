//! A recorder for tests that the metrics named in the code are the ones recorded: every
//! counter increment and histogram sample made on this thread inside `capture`, as
//! `name{label=value,...}` (labels in the order the call site gives them) and the value.

use std::sync::Arc;

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use parking_lot::Mutex;

pub type Samples = Vec<(String, f64)>;

/// Runs `f` with a capturing recorder; returns its result and what it recorded.
pub fn capture<T>(f: impl FnOnce() -> T) -> (T, Samples) {
    let rec = Capture::default();
    let out = metrics::with_local_recorder(&rec, f);
    let samples = std::mem::take(&mut *rec.0.lock());
    (out, samples)
}

#[derive(Default)]
struct Capture(Arc<Mutex<Samples>>);

/// One registered key: where its samples go.
struct Sink {
    name: String,
    samples: Arc<Mutex<Samples>>,
}

impl Sink {
    fn push(&self, v: f64) {
        self.samples.lock().push((self.name.clone(), v));
    }
}

impl CounterFn for Sink {
    fn increment(&self, v: u64) {
        self.push(v as f64);
    }
    fn absolute(&self, v: u64) {
        self.push(v as f64);
    }
}

impl HistogramFn for Sink {
    fn record(&self, v: f64) {
        self.push(v);
    }
}

impl Capture {
    fn sink(&self, key: &Key) -> Arc<Sink> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        Arc::new(Sink {
            name: format!("{}{{{}}}", key.name(), labels.join(",")),
            samples: self.0.clone(),
        })
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.sink(key))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.sink(key))
    }
}
