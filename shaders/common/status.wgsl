// The status counters of bad input only the GPU can see (see `Status` in src/loss/mod.rs), for
// the kernels that bind `status: array<atomic<u32>>`. Each thread counts in registers and adds
// its counts once, at the end: an atomic per bad element would serialise on a CPU driver.
fn count_bad(bad_labels: u32, bad_logits: u32, bad_targets: u32) {
    if bad_labels != 0u {
        atomicAdd(&status[STATUS_BAD_LABEL], bad_labels);
    }
    if bad_logits != 0u {
        atomicAdd(&status[STATUS_NONFINITE_LOGIT], bad_logits);
    }
    if bad_targets != 0u {
        atomicAdd(&status[STATUS_NONFINITE_TARGET], bad_targets);
    }
}
