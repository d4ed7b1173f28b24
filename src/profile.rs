//! Per-pass GPU timing, for profiling: which compute pass of a loss takes the time.
//!
//! Every compute pass the crate records goes through `Kernels::begin_pass`. When pass timing is
//! on ([`Kernels::enable_pass_timing`]), that pass gets a timestamp at its start and end (WebGPU
//! pass timestamps, `Features::TIMESTAMP_QUERY`); [`Kernels::read_pass_times`] reads them back
//! with the pass labels. Off (the default), passes are recorded with no timestamps and this
//! module costs nothing. `segloss bench --passes` prints the result for every loss.

use crate::error::{Error, Result};
use crate::kernels::{lock, Kernels};

/// The most passes one read can time: a WebGPU query set holds at most 4096 queries, two per
/// pass.
pub const MAX_TIMED_PASSES: u32 = 2048;

/// The GPU time of one compute pass, in the order the passes were recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct PassTime {
    /// The pass's label (for example `segloss region statistics`).
    pub label: String,
    /// Milliseconds from the pass's start timestamp to its end timestamp.
    pub ms: f64,
}

pub(crate) struct PassTimer {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    capacity: u32,
    /// Labels of the passes recorded since the last read; pass i owns queries 2i and 2i + 1.
    labels: Vec<String>,
    /// Passes recorded beyond `capacity` since the last read (recorded untimed).
    dropped: usize,
}

impl Kernels {
    /// Turns per-pass timing on for the passes recorded from now on, up to `max_passes`
    /// (1 to [`MAX_TIMED_PASSES`]) between two [`read_pass_times`](Self::read_pass_times).
    /// Needs a device created with `Features::TIMESTAMP_QUERY` ([`crate::Gpu::new`] asks for it
    /// where the adapter has it). Replaces an earlier timer and forgets its passes. Passes are
    /// numbered in recording order, so time one thread that records and submits in order: passes
    /// recorded from several threads at once, or encoders submitted out of order, get each
    /// other's labels.
    pub fn enable_pass_timing(&self, max_passes: u32) -> Result<()> {
        if !(1..=MAX_TIMED_PASSES).contains(&max_passes) {
            return Err(Error::Gpu(format!(
                "pass timing: max_passes {max_passes} is outside 1..={MAX_TIMED_PASSES}"
            )));
        }
        let device = self.device();
        if !device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return Err(Error::Gpu(
                "pass timing needs a device created with Features::TIMESTAMP_QUERY".into(),
            ));
        }
        let queries = 2 * max_passes;
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("segloss pass timing"),
            ty: wgpu::QueryType::Timestamp,
            count: queries,
        });
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("segloss pass timing resolve"),
            size: u64::from(queries) * wgpu::QUERY_SIZE as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        *lock(&self.inner.timer) = Some(PassTimer {
            set,
            resolve,
            capacity: max_passes,
            labels: Vec::new(),
            dropped: 0,
        });
        Ok(())
    }

    /// Turns per-pass timing off; passes recorded from now on carry no timestamps.
    pub fn disable_pass_timing(&self) {
        *lock(&self.inner.timer) = None;
    }

    /// The GPU time of every pass recorded since timing was enabled or last read, in recording
    /// order, and forgets them. Every command encoder that recorded those passes must have been
    /// submitted to `queue` first (an unsubmitted pass has no timestamps to read). Blocks until
    /// the device is idle. An error if timing is off, or if more passes were recorded than the
    /// timer holds (enable it with a larger `max_passes`).
    pub fn read_pass_times(&self, queue: &wgpu::Queue) -> Result<Vec<PassTime>> {
        let (set, resolve, labels, dropped) = {
            let mut guard = lock(&self.inner.timer);
            let timer = guard
                .as_mut()
                .ok_or_else(|| Error::Gpu("pass timing is off".into()))?;
            let labels = std::mem::take(&mut timer.labels);
            let dropped = std::mem::replace(&mut timer.dropped, 0);
            (timer.set.clone(), timer.resolve.clone(), labels, dropped)
        };
        if dropped > 0 {
            return Err(Error::Gpu(format!(
                "pass timing: {} passes recorded, the timer holds {}; enable it with a larger \
                 max_passes",
                labels.len() + dropped,
                labels.len()
            )));
        }
        if labels.is_empty() {
            return Ok(Vec::new());
        }
        let device = self.device();
        let queries = 2 * labels.len() as u32;
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("segloss pass timing resolve"),
        });
        encoder.resolve_query_set(&set, 0..queries, &resolve, 0);
        queue.submit([encoder.finish()]);
        let ticks: Vec<u64> = crate::readback::download(device, queue, &resolve, queries as usize)?;
        let ns_per_tick = f64::from(queue.get_timestamp_period());
        Ok(labels
            .into_iter()
            .zip(ticks.chunks_exact(2))
            .map(|(label, t)| PassTime {
                label,
                ms: t[1].saturating_sub(t[0]) as f64 * ns_per_tick * 1e-6,
            })
            .collect())
    }

    /// Begins a compute pass labelled `label` in `encoder`, with start and end timestamps when
    /// pass timing is on. Every pass of the crate starts here.
    pub(crate) fn begin_pass<'e>(
        &self,
        encoder: &'e mut wgpu::CommandEncoder,
        label: &str,
    ) -> wgpu::ComputePass<'e> {
        let mut guard = lock(&self.inner.timer);
        let slot = guard.as_mut().and_then(|timer| {
            let index = timer.labels.len() as u32;
            if index < timer.capacity {
                timer.labels.push(label.to_owned());
                Some((timer.set.clone(), index))
            } else {
                timer.dropped += 1;
                None
            }
        });
        drop(guard);
        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes: slot
                .as_ref()
                .map(|(set, index)| wgpu::ComputePassTimestampWrites {
                    query_set: set,
                    beginning_of_pass_write_index: Some(2 * index),
                    end_of_pass_write_index: Some(2 * index + 1),
                }),
        })
    }
}
