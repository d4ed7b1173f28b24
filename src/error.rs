//! The crate's one error type.

/// Everything that can go wrong in `segloss`, each variant naming the bad value.
///
/// Host-visible problems (shapes, parameters, buffers) are reported before anything is recorded.
/// Problems only the GPU can see (a label out of range, a non-finite logit) are counted into the
/// plan's status buffer; the blocking helpers turn a non-zero count into [`Error::BadInput`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No adapter matched the request (backend, power preference).
    #[error("no GPU adapter found: {0}")]
    NoAdapter(String),
    /// The adapter refused the device request.
    #[error("could not create a device: {0}")]
    RequestDevice(String),
    /// A shape is malformed (zero extent, too many dimensions, too many elements).
    #[error("invalid shape: {0}")]
    Shape(String),
    /// A loss name that the registry does not know.
    #[error("unknown loss `{name}` (known: {known})")]
    UnknownLoss {
        /// The name given.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// A parameter name that the loss does not take.
    #[error("loss `{loss}` has no parameter `{name}` (it takes: {known})")]
    UnknownParameter {
        /// The loss.
        loss: &'static str,
        /// The parameter name given.
        name: String,
        /// The parameters the loss takes, comma-separated.
        known: String,
    },
    /// A parameter value that is malformed or out of range.
    #[error("loss `{loss}`: bad value for `{name}`: {message}")]
    Parameter {
        /// The loss.
        loss: &'static str,
        /// The parameter.
        name: String,
        /// What is wrong, with the value.
        message: String,
    },
    /// The loss does not accept this kind of target, or this combination with the shape.
    #[error("loss `{loss}`: {message}")]
    Target {
        /// The loss.
        loss: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A host slice has the wrong number of elements.
    #[error("`{name}` has {actual} elements, expected {expected}")]
    Length {
        /// Which input.
        name: &'static str,
        /// Elements expected from the shape.
        expected: usize,
        /// Elements given.
        actual: usize,
    },
    /// A caller-owned buffer is too small, lacks a usage, or aliases another one.
    #[error("buffer `{name}`: {message}")]
    Buffer {
        /// Which binding (`logits`, `targets`, `loss`, `grad`).
        name: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A tensor does not fit in one storage binding (or in 32-bit indexing) on this device.
    #[error("`{name}` needs {bytes} bytes in one storage binding, but this device allows {limit}; split the batch")]
    TooLarge {
        /// Which tensor.
        name: &'static str,
        /// Bytes it needs.
        bytes: u64,
        /// The device's limit.
        limit: u64,
    },
    /// Bad values in the inputs, counted by the GPU (its status buffer) or by the CPU
    /// reference (see [`crate::Status`]).
    #[error("bad input: {0}")]
    BadInput(crate::Status),
    /// The device was created with a limit below what the kernels need (`Kernels::new`).
    #[error("the device's {name} is {has}; segloss needs at least {needs}")]
    Limit {
        /// The `wgpu::Limits` field.
        name: &'static str,
        /// The device's value.
        has: u64,
        /// What the kernels need.
        needs: u64,
    },
    /// wgpu reported a failure (validation, out of memory, mapping, device lost).
    #[error("wgpu: {0}")]
    Gpu(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `buf` has every usage of `need` and at least `bytes` bytes; otherwise an error naming it, the
/// usages it lacks or the bytes it has and needs.
pub(crate) fn check_buffer(
    name: &'static str,
    buf: &wgpu::Buffer,
    need: wgpu::BufferUsages,
    bytes: u64,
) -> Result<()> {
    let missing = need.difference(buf.usage());
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter_names().map(|(n, _)| n).collect();
        return Err(Error::Buffer {
            name,
            message: format!("usage {:?} lacks {}", buf.usage(), names.join(" | ")),
        });
    }
    if buf.size() < bytes {
        return Err(Error::Buffer {
            name,
            message: format!("{} bytes, but the plan needs {bytes}", buf.size()),
        });
    }
    Ok(())
}
