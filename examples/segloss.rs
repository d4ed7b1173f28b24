//! `segloss`: the command-line tool.
//!
//! ```text
//! cargo run --release --example segloss -- info
//! cargo run --release --example segloss -- eval --loss focal --logits z.npy --target y.npy \
//!     --param gamma=2 --param alpha=0.25 --grad g.npy --repeat 20
//! cargo run --release --example segloss -- edt --mask m.npy --spacing 1,1,2.5 --repeat 20
//! cargo run --release --example segloss -- check --seed 7
//! ```
//!
//! Run with `--help` for the full usage. Bad input ends with a non-zero exit status and one line
//! on stderr, `segloss: error: ...`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use npyz::{DType, NpyFile, TypeChar, WriterBuilder};
use segloss::readback::{download, read_status, upload, zeros};
use segloss::{
    Gpu, GpuOptions, Inputs, KernelOptions, Kernels, Loss, LossOutput, Outputs, Reduction, Shape,
    TargetKind, Targets,
};
use serde_json::{json, Map, Value};

const USAGE: &str = "\
segloss: segmentation losses and their gradients on the GPU (wgpu), with a CPU reference

usage:
  segloss info
      The adapter, backend, driver, features and limits in use.

  segloss eval --loss NAME --logits Z.npy --target Y.npy [--param KEY=VALUE]...
               [--backend gpu|cpu] [--grad G.npy] [--repeat R [--passes]]
               [--tuning auto|gpu|software]
      Computes the loss and dL/dlogits and prints one JSON object on stdout.
        --logits   float32 [N, C, *S], 1 to 3 spatial dimensions, C order
        --target   labels: any integer dtype (or bool), shape [N, *S] or [N, 1, *S],
                   values within int32; dense: float32 (or float64) of the logits' shape
        --param    a loss parameter (LOSSES.md's names; lists comma-separated, e.g.
                   weight=1,2,0.5); repeatable, the last occurrence of a key wins
        --backend  gpu (default) or cpu (the reference implementation)
        --grad     writes the gradient as float32 .npy, the logits' shape
        --repeat   runs forward+backward R more times on the resident buffers (after
                   untimed calls filling 0.2 s, so a GPU that idled is back at its clocks)
                   and adds \"ms\" (median wall ms per call, submit to completion) and, where
                   the device has timestamp queries, \"gpu_ms\" (median GPU time per call)
        --passes   with --repeat, also times each compute pass on these inputs, as bench
                   --passes does (\"passes\": label, count, ms); needs timestamp queries
      Output keys: \"loss\" (a number for reduction mean/sum; for reduction none an array,
      flattened in C order, of shape \"loss_shape\": [N, *S] for cross-entropy, [N, C', *S]
      for the others, C' the channels in the loss), \"loss_shape\" ([] for a number),
      \"loss_name\", \"params\", \"reduction\", \"target\" (labels|dense), \"shape\",
      \"backend\" (gpu|cpu), \"adapter\" (adapter name or \"cpu reference\"), \"shaders\"
      (the digest of the WGSL this binary carries, as `info` prints it).

  segloss edt --mask M.npy [--spacing S,...] [--signed] [--method NAME] [--backend gpu|cpu]
              [--out D.npy] [--repeat R]
      The Euclidean distance transform of each mask, as scipy's
      distance_transform_edt(mask, sampling=spacing): each mask pixel's distance to the
      nearest pixel outside the mask, 0 outside (and 0 for a mask with no pixel outside).
        --mask     an integer or bool array [N, *S], 1 to 3 spatial axes: N masks, non-zero
                   is inside
        --spacing  the pixel size per spatial axis (default 1 on every axis)
        --signed   the boundary loss's signed map instead: EDT(not M) outside,
                   -(EDT(M) - 1) inside, 0 for an empty or full mask
        --method   exact (default), or on the GPU an approximation by jump flooding:
                   jfa, jfa+1, jfa+2, 1+jfa
        --out      writes the distances as float32 .npy, the mask's shape
        --repeat   as for eval: \"ms\" and, where the device has them, \"gpu_ms\"
      Output keys: \"shape\", \"spacing\", \"signed\", \"method\", \"backend\", \"adapter\",
      \"shaders\", \"sum\" and \"max\" (of the distances, in f64).

  segloss check [--seed N] [--tuning auto|gpu|software] [--logit-scale S] [--random K]
      Every loss, several parameter variants each, on seeded random inputs: GPU against the
      CPU reference. Prints a table; exits non-zero if any case fails (loss relative error or
      gradient error relative to max |grad| above 1e-4).
        --logit-scale  logits uniform in [-S, S] (default 4); larger S checks the confident,
                       saturated regime of a trained network
        --random       also K copies of every case on random small shapes (its parameters,
                       targets, channels and dimensionality; N from 1 to 3, each spatial
                       extent from 1 to 13), drawn from the seed: sizes the fixed cases miss

  segloss bench [--preset full|small] [--losses A,B,...] [--repeat R] [--cpu-repeat R]
                [--no-cpu] [--passes] [--json] [--tuning auto|gpu|software]
      Every loss (or those listed) at a 2D size (8x19x128x256; small: 2x19x32x64) and a 3D
      size (2x14x64x64x64; small: 1x14x16x16x16), C = 1 or 2 for the binary losses: median
      GPU time (timestamp queries where the adapter has them, else wall time submit to
      completion, on resident buffers, after untimed calls filling 0.2 s) and CPU reference
      time; the unavoidable bytes (logits and targets read once per pass over them, gradient
      written once) and their rate, next to a copy kernel's rate on the same adapter (the
      roofline) and the fraction reached.
      --passes also times every compute pass of each loss on its own (pass timestamps;
      median over the repeats, summed per pass label, with the count of such passes), to
      show which pass takes the time (JSON: a \"passes\" array of label, count, ms).
      --json prints one JSON object per line instead of the table (with \"shaders\", the
      digest of the WGSL timed, as in eval's output). A case the adapter
      cannot hold (a buffer over its limits) gets a row saying why (JSON: an \"error\" key),
      the others still run, and the exit status is 1.

losses: the names of LOSSES.md (segloss check lists them all)
--tuning: the kernels' tuning (eval, check, bench): gpu (a thread per pixel, channels read
  again from the caches) or software (many pixels per thread, channels kept in private arrays);
  auto (default) by the adapter's device type. Results agree up to rounding.
environment: WGPU_BACKEND=vulkan|metal|dx12 picks the backend (default: any of those three)
";

/// What ends the program early: a bad command line (exit 2) or anything else (exit 1).
#[derive(Debug)]
enum CliError {
    Usage(String),
    Failed(String),
}

type CliResult<T> = Result<T, CliError>;

fn usage<T>(msg: impl Into<String>) -> CliResult<T> {
    Err(CliError::Usage(msg.into()))
}

fn failed<T>(msg: impl Into<String>) -> CliResult<T> {
    Err(CliError::Failed(msg.into()))
}

impl From<segloss::Error> for CliError {
    fn from(e: segloss::Error) -> Self {
        CliError::Failed(e.to_string())
    }
}

/// Collapses whitespace so that every message is one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn main() -> ExitCode {
    // Mesa's lavapipe prints `error: XDG_RUNTIME_DIR is invalid` when it is unset; give it one so
    // that an error run still prints exactly one line.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    // A bug must still end with one line on stderr; "panicked" stays in it so that tests catch it.
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "segloss: error: internal error (panicked{at}): {}",
            one_line(&msg)
        );
    }));
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(a) => {
                eprintln!("segloss: error: argument {a:?} is not valid UTF-8");
                return ExitCode::from(2);
            }
        }
    }
    match run(&args) {
        Ok(code) => code,
        Err(CliError::Usage(m)) => {
            eprintln!(
                "segloss: error: {} (see `segloss --help`)",
                one_line(&m).trim_end_matches('.')
            );
            ExitCode::from(2)
        }
        Err(CliError::Failed(m)) => {
            eprintln!("segloss: error: {}", one_line(&m));
            ExitCode::from(1)
        }
    }
}

fn run(args: &[String]) -> CliResult<ExitCode> {
    let Some(command) = args.first() else {
        print_out(USAGE)?;
        return Ok(ExitCode::SUCCESS);
    };
    let rest = &args[1..];
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        print_out(USAGE)?;
        return Ok(ExitCode::SUCCESS);
    }
    warn_if_stale_shaders();
    match command.as_str() {
        "--help" | "-h" | "help" => {
            print_out(USAGE)?;
            Ok(ExitCode::SUCCESS)
        }
        "info" => {
            parse_flags("info", rest, &[])?;
            info()
        }
        "eval" => eval(rest),
        "edt" => edt(rest),
        "check" => check(rest),
        "bench" => bench(rest),
        other => usage(format!(
            "unknown command `{other}` (commands: info, eval, edt, check, bench)"
        )),
    }
}

/// Warns (stderr) when this binary carries other WGSL than the checkout it was built in: a build
/// made with edited shaders that were restored since would check and time other kernels than
/// the checkout's, and nothing else would show it. Silent away from the checkout.
fn warn_if_stale_shaders() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    if segloss::shader::differs_from_dir(&dir) == Some(true) {
        eprintln!(
            "segloss: warning: this binary was built from other WGSL than {} (shaders {}); \
             rebuild it (cargo build --release --example segloss)",
            dir.display(),
            shaders_id()
        );
    }
}

/// The digest of the WGSL compiled into this binary, as JSON output and `info` give it.
fn shaders_id() -> String {
    format!("{:016x}", segloss::shader::digest())
}

/// Writes to stdout, turning a closed pipe into an error instead of a panic.
fn print_out(s: &str) -> CliResult<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|_| out.flush())
        .or_else(|e| failed(format!("writing to stdout: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Command-line flags

/// A flag a command takes: its name (without `--`) and whether it may be repeated.
struct FlagSpec {
    name: &'static str,
    repeatable: bool,
}

/// Flags that take no value (their presence is the value).
const SWITCHES: &[&str] = &["json", "no-cpu", "passes", "signed"];

const fn flag(name: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        repeatable: false,
    }
}

/// Parses `--name value` / `--name=value` pairs; every flag takes a value.
fn parse_flags(
    command: &str,
    args: &[String],
    specs: &[FlagSpec],
) -> CliResult<Vec<(&'static str, String)>> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let Some(body) = arg.strip_prefix("--") else {
            return usage(format!("{command}: unexpected argument `{arg}`"));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some(spec) = specs.iter().find(|s| s.name == name) else {
            let known: Vec<String> = specs.iter().map(|s| format!("--{}", s.name)).collect();
            return usage(if known.is_empty() {
                format!("{command}: unknown flag `--{name}` ({command} takes no flags)")
            } else {
                format!(
                    "{command}: unknown flag `--{name}` (it takes {})",
                    known.join(", ")
                )
            });
        };
        let value = match inline {
            Some(v) => v,
            None if SWITCHES.contains(&name) => "true".to_string(),
            None => {
                i += 1;
                match args.get(i) {
                    Some(v) if !v.starts_with("--") => v.clone(),
                    _ => return usage(format!("{command}: --{name} needs a value")),
                }
            }
        };
        if !spec.repeatable && out.iter().any(|(n, _)| *n == spec.name) {
            return usage(format!("{command}: --{name} given more than once"));
        }
        out.push((spec.name, value));
        i += 1;
    }
    Ok(out)
}

fn get<'a>(flags: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    flags
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

fn required<'a>(
    command: &str,
    flags: &'a [(&'static str, String)],
    name: &str,
) -> CliResult<&'a str> {
    get(flags, name).map_or_else(
        || usage(format!("{command}: missing required flag --{name}")),
        Ok,
    )
}

// ---------------------------------------------------------------------------------------------
// The device

/// Validation errors wgpu reports outside error scopes; by default it would panic on them.
static UNCAPTURED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// `--tuning`: the kernels' tuning (`KernelOptions::software_tuning`), by default the adapter's.
fn tuning_flag(command: &str, flags: &[(&'static str, String)]) -> CliResult<Option<bool>> {
    match get(flags, "tuning") {
        None | Some("auto") => Ok(None),
        Some("gpu") => Ok(Some(false)),
        Some("software") => Ok(Some(true)),
        Some(t) => usage(format!(
            "{command}: --tuning must be auto, gpu or software, got `{t}`"
        )),
    }
}

/// The device, and kernels tuned as `tuning` says (`None`: for the adapter's type).
fn open_gpu(tuning: Option<bool>) -> CliResult<(Gpu, Kernels)> {
    let gpu = Gpu::new(&GpuOptions::default())?;
    gpu.device
        .on_uncaptured_error(Arc::new(|e: segloss::wgpu::Error| {
            let mut errors = UNCAPTURED.lock().unwrap_or_else(|p| p.into_inner());
            errors.push(e.to_string());
        }));
    let options = KernelOptions {
        software_tuning: tuning,
        ..Default::default()
    };
    let kernels = Kernels::with_options(&gpu.device, options)?;
    Ok((gpu, kernels))
}

/// Fails with the first error wgpu reported outside error scopes, if any.
fn gpu_errors() -> CliResult<()> {
    let errors = UNCAPTURED.lock().unwrap_or_else(|p| p.into_inner());
    match errors.first() {
        Some(e) => failed(format!("wgpu: {e}")),
        None => Ok(()),
    }
}

fn wait(device: &segloss::wgpu::Device, index: segloss::wgpu::SubmissionIndex) -> CliResult<()> {
    device
        .poll(segloss::wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: None,
        })
        .map(|_| ())
        .or_else(|e| failed(format!("wgpu: waiting for the GPU: {e}")))
}

fn info() -> CliResult<ExitCode> {
    use segloss::wgpu::Features;
    let (gpu, kernels) = open_gpu(None)?;
    let i = gpu.adapter.get_info();
    let f = gpu.device.features();
    let l = gpu.device.limits();
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let subgroups = if kernels.uses_subgroups() {
        format!(
            "used (subgroup size {}..{})",
            i.subgroup_min_size, i.subgroup_max_size
        )
    } else if gpu.adapter.features().contains(Features::SUBGROUP) {
        "available but not used".to_string()
    } else {
        "not used (the adapter lacks SUBGROUP; shared-memory reductions)".to_string()
    };
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("{k:<38} {v}\n"));
    line("adapter", i.name.clone());
    line("device type", format!("{:?}", i.device_type));
    line("shaders (WGSL digest)", shaders_id());
    line(
        "kernel tuning",
        if kernels.software_tuned() {
            "software (many pixels per thread, pixel cache)".to_string()
        } else {
            "gpu (a thread per pixel, no pixel cache)".to_string()
        },
    );
    line("backend", format!("{:?}", i.backend));
    line(
        "driver",
        if i.driver_info.is_empty() {
            i.driver.clone()
        } else {
            format!("{} ({})", i.driver, i.driver_info)
        },
    );
    line(
        "vendor / device id",
        format!("0x{:04x} / 0x{:04x}", i.vendor, i.device),
    );
    line("subgroups", subgroups);
    line(
        "timestamp queries",
        format!(
            "{} (inside encoders: {}, period {} ns)",
            yes(f.contains(Features::TIMESTAMP_QUERY)),
            yes(f.contains(Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)),
            gpu.queue.get_timestamp_period()
        ),
    );
    line(
        "max_storage_buffer_binding_size",
        format!(
            "{} ({:.0} MiB)",
            l.max_storage_buffer_binding_size,
            mib(l.max_storage_buffer_binding_size)
        ),
    );
    line(
        "max_buffer_size",
        format!("{} ({:.0} MiB)", l.max_buffer_size, mib(l.max_buffer_size)),
    );
    line(
        "max_compute_workgroups_per_dimension",
        l.max_compute_workgroups_per_dimension.to_string(),
    );
    line(
        "max_compute_invocations_per_workgroup",
        l.max_compute_invocations_per_workgroup.to_string(),
    );
    line(
        "max_compute_workgroup_storage_size",
        format!(
            "{} (segloss needs {})",
            l.max_compute_workgroup_storage_size,
            segloss::MIN_WORKGROUP_STORAGE
        ),
    );
    line(
        "max_storage_buffers_per_shader_stage",
        format!(
            "{} (segloss needs {}; with {}, the vec4 view of the logits: {})",
            l.max_storage_buffers_per_shader_stage,
            segloss::MIN_STORAGE_BUFFERS,
            segloss::shader::Caps::LOGITS_VEC4_STORAGE_BUFFERS,
            yes(kernels.caps().logits_vec4)
        ),
    );
    line(
        "workgroup size / max workgroups",
        format!("{} / {}", segloss::WG, segloss::MAX_WORKGROUPS),
    );
    gpu_errors()?;
    print_out(&s)?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// .npy files

/// The elements of an array file, widened to one type per family.
enum Values {
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// Every signed integer dtype, unsigned ones up to 32 bits, and bool.
    Int(Vec<i64>),
    U64(Vec<u64>),
}

struct Array {
    dims: Vec<usize>,
    /// numpy's spelling of the dtype, for messages.
    descr: String,
    values: Values,
}

fn read_npy(what: &str, path: &str) -> CliResult<Array> {
    let file = File::open(path)
        .or_else(|e| failed(format!("cannot open the {what} file `{path}`: {e}")))?;
    let npy = NpyFile::new(BufReader::new(file)).or_else(|e| {
        failed(format!(
            "the {what} file `{path}` is not a valid .npy file: {e}"
        ))
    })?;
    let dims = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .or_else(|_| {
            failed(format!(
                "the {what} file `{path}` has a shape too large for this machine"
            ))
        })?;
    if npy.order() == npyz::Order::Fortran && dims.iter().filter(|&&d| d > 1).count() > 1 {
        return failed(format!(
            "the {what} file `{path}` is stored in Fortran order; save a C-contiguous array \
             (np.ascontiguousarray)"
        ));
    }
    let dtype = npy.dtype();
    let descr = dtype.descr();
    let DType::Plain(ts) = &dtype else {
        return failed(format!(
            "the {what} file `{path}` has the structured dtype {descr}; expected a plain numeric array"
        ));
    };
    let err =
        |e: std::io::Error| CliError::Failed(format!("reading the {what} file `{path}`: {e}"));
    let ints = |v: Vec<i64>| Values::Int(v);
    let values = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => Values::F32(npy.into_vec::<f32>().map_err(err)?),
        (TypeChar::Float, 8) => Values::F64(npy.into_vec::<f64>().map_err(err)?),
        (TypeChar::Int, 1) => ints(widen(npy.into_vec::<i8>().map_err(err)?)),
        (TypeChar::Int, 2) => ints(widen(npy.into_vec::<i16>().map_err(err)?)),
        (TypeChar::Int, 4) => ints(widen(npy.into_vec::<i32>().map_err(err)?)),
        (TypeChar::Int, 8) => ints(npy.into_vec::<i64>().map_err(err)?),
        (TypeChar::Uint, 1) => ints(widen(npy.into_vec::<u8>().map_err(err)?)),
        (TypeChar::Uint, 2) => ints(widen(npy.into_vec::<u16>().map_err(err)?)),
        (TypeChar::Uint, 4) => ints(widen(npy.into_vec::<u32>().map_err(err)?)),
        (TypeChar::Uint, 8) => Values::U64(npy.into_vec::<u64>().map_err(err)?),
        (TypeChar::Bool, 1) => ints(widen(npy.into_vec::<bool>().map_err(err)?)),
        _ => {
            return failed(format!(
                "the {what} file `{path}` has dtype {descr}, which segloss does not read \
                 (logits: float32; targets: an integer dtype for labels, float32 or float64 \
                 for dense targets)"
            ))
        }
    };
    Ok(Array {
        dims,
        descr,
        values,
    })
}

fn widen<T: Into<i64>>(v: Vec<T>) -> Vec<i64> {
    v.into_iter().map(Into::into).collect()
}

/// Writes `data` as a float32 .npy of shape `dims`; `what` names it in errors.
fn write_f32_npy(what: &str, path: &str, dims: &[usize], data: &[f32]) -> CliResult<()> {
    let fail = |e: std::io::Error| CliError::Failed(format!("writing the {what} to `{path}`: {e}"));
    let file = File::create(path).map_err(fail)?;
    let shape: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&shape)
        .writer(BufWriter::new(file))
        .begin_nd()
        .map_err(fail)?;
    w.extend(data.iter().copied()).map_err(fail)?;
    w.finish().map_err(fail)
}

/// Host targets owned by the tool.
enum OwnedTargets {
    Labels(Vec<i32>),
    Dense(Vec<f32>),
}

impl OwnedTargets {
    fn view(&self) -> Targets<'_> {
        match self {
            OwnedTargets::Labels(v) => Targets::Labels(v),
            OwnedTargets::Dense(v) => Targets::Dense(v),
        }
    }
}

fn fmt_dims(d: &[usize]) -> String {
    format!(
        "[{}]",
        d.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Reads the logits: float32 `[N, C, *S]`.
fn read_logits(path: &str) -> CliResult<(Shape, Vec<f32>)> {
    let a = read_npy("logits", path)?;
    let z = match a.values {
        Values::F32(v) => v,
        Values::F64(_) => {
            return failed(format!(
                "the logits in `{path}` are float64 ({}); segloss takes float32 logits \
                 (save them with .astype(np.float32))",
                a.descr
            ))
        }
        _ => {
            return failed(format!(
                "the logits in `{path}` have dtype {}; segloss takes float32 logits",
                a.descr
            ))
        }
    };
    let shape =
        Shape::from_dims(&a.dims).or_else(|e| failed(format!("the logits in `{path}`: {e}")))?;
    Ok((shape, z))
}

/// Reads the targets: integer labels `[N, *S]` or `[N, 1, *S]`, or dense float of the logits'
/// shape.
fn read_targets(path: &str, shape: &Shape) -> CliResult<OwnedTargets> {
    let a = read_npy("target", path)?;
    let logits = shape.dims();
    let mut labels_a = vec![shape.n()];
    labels_a.extend(shape.spatial());
    let mut labels_b = vec![shape.n(), 1];
    labels_b.extend(shape.spatial());
    let is_labels_shape = a.dims == labels_a || a.dims == labels_b;
    let label = |i: usize, v: i128| -> CliResult<i32> {
        i32::try_from(v).or_else(|_| {
            failed(format!(
                "the target in `{path}` holds the label {v} (element {i}), outside the int32 range"
            ))
        })
    };
    let bad_label_shape = || {
        let hint = if a.dims == logits {
            "; dense targets of the logits' shape must be float32 or float64"
        } else {
            ""
        };
        failed(format!(
            "the integer target in `{path}` ({}) has shape {}; labels need [N, *S] = {} or \
             [N, 1, *S] = {} for logits {}{hint}",
            a.descr,
            fmt_dims(&a.dims),
            fmt_dims(&labels_a),
            fmt_dims(&labels_b),
            fmt_dims(&logits)
        ))
    };
    let bad_dense_shape = || {
        let hint = if is_labels_shape {
            "; class-index labels must be an integer array"
        } else {
            ""
        };
        failed(format!(
            "the float target in `{path}` ({}) has shape {}; dense targets need the logits' \
             shape {}{hint}",
            a.descr,
            fmt_dims(&a.dims),
            fmt_dims(&logits)
        ))
    };
    match a.values {
        Values::Int(v) => {
            if !is_labels_shape {
                return bad_label_shape();
            }
            let labels = v
                .iter()
                .enumerate()
                .map(|(i, &x)| label(i, x as i128))
                .collect::<CliResult<Vec<i32>>>()?;
            Ok(OwnedTargets::Labels(labels))
        }
        Values::U64(v) => {
            if !is_labels_shape {
                return bad_label_shape();
            }
            let labels = v
                .iter()
                .enumerate()
                .map(|(i, &x)| label(i, x as i128))
                .collect::<CliResult<Vec<i32>>>()?;
            Ok(OwnedTargets::Labels(labels))
        }
        Values::F32(v) => {
            if a.dims != logits {
                return bad_dense_shape();
            }
            Ok(OwnedTargets::Dense(v))
        }
        Values::F64(v) => {
            if a.dims != logits {
                return bad_dense_shape();
            }
            Ok(OwnedTargets::Dense(
                v.into_iter().map(|x| x as f32).collect(),
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// eval

/// A finite f32 as the JSON number with the shortest text that reads back as the same f32.
fn num(x: f32) -> Value {
    if !x.is_finite() {
        return Value::Null;
    }
    let shortest: f64 = x.to_string().parse().unwrap_or(x as f64);
    serde_json::Number::from_f64(shortest).map_or(Value::Null, Value::Number)
}

fn num64(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median milliseconds of repeated calls: wall time (submit to completion on the GPU), and GPU
/// time where the device has timestamp queries.
#[derive(Default)]
struct Timing {
    ms: Option<f64>,
    gpu_ms: Option<f64>,
}

impl Timing {
    /// Times `repeat` calls of `f` on the CPU (none: no timing).
    fn cpu(repeat: Option<usize>, mut f: impl FnMut()) -> Timing {
        let ms = repeat.map(|r| {
            let times = (0..r)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            median(times)
        });
        Timing { ms, gpu_ms: None }
    }

    /// The GPU time where there is one, else the wall time.
    fn best(&self) -> f64 {
        self.gpu_ms.or(self.ms).unwrap_or(f64::NAN)
    }

    /// Adds "ms" and "gpu_ms" (those measured) to a JSON object.
    fn insert_into(&self, obj: &mut Map<String, Value>) {
        if let Some(ms) = self.ms {
            obj.insert("ms".into(), num64(ms));
        }
        if let Some(g) = self.gpu_ms {
            obj.insert("gpu_ms".into(), num64(g));
        }
    }
}

/// `--backend`: true for gpu (the default), false for cpu.
fn backend_flag(command: &str, flags: &[(&'static str, String)]) -> CliResult<bool> {
    match get(flags, "backend").unwrap_or("gpu") {
        "gpu" => Ok(true),
        "cpu" => Ok(false),
        other => usage(format!(
            "{command}: --backend must be gpu or cpu, got `{other}`"
        )),
    }
}

/// `--repeat`, if given: a whole number >= 1.
fn repeat_flag(command: &str, flags: &[(&'static str, String)]) -> CliResult<Option<usize>> {
    match get(flags, "repeat") {
        None => Ok(None),
        Some(r) => match r.parse::<usize>() {
            Ok(r) if r >= 1 => Ok(Some(r)),
            _ => usage(format!(
                "{command}: --repeat must be a whole number >= 1, got `{r}`"
            )),
        },
    }
}

fn eval(args: &[String]) -> CliResult<ExitCode> {
    const C: &str = "eval";
    let flags = parse_flags(
        C,
        args,
        &[
            flag("loss"),
            flag("logits"),
            flag("target"),
            FlagSpec {
                name: "param",
                repeatable: true,
            },
            flag("backend"),
            flag("grad"),
            flag("repeat"),
            flag("tuning"),
            flag("passes"),
        ],
    )?;
    let name = required(C, &flags, "loss")?;
    let logits_path = required(C, &flags, "logits")?;
    let target_path = required(C, &flags, "target")?;
    let mut params = Vec::new();
    for (_, p) in flags.iter().filter(|(n, _)| *n == "param") {
        let Some((k, v)) = p.split_once('=') else {
            return usage(format!("{C}: --param expects KEY=VALUE, got `{p}`"));
        };
        if k.trim().is_empty() {
            return usage(format!("{C}: --param expects KEY=VALUE, got `{p}`"));
        }
        params.push((k.trim().to_string(), v.trim().to_string()));
    }
    let gpu_backend = backend_flag(C, &flags)?;
    let repeat = repeat_flag(C, &flags)?;
    let tuning = tuning_flag(C, &flags)?;
    let grad_path = get(&flags, "grad");
    let by_pass = get(&flags, "passes").is_some();
    if by_pass && (repeat.is_none() || !gpu_backend) {
        return usage(format!(
            "{C}: --passes times the GPU's passes over the repeats: it needs --repeat and the gpu backend"
        ));
    }

    let loss = Loss::from_name(name, &params)?;
    let (shape, z) = read_logits(logits_path)?;
    let targets = read_targets(target_path, &shape)?;
    let kind = targets.view().kind();
    loss.validate(&shape, kind)?;

    let (out, adapter, timing, pass_times) = if gpu_backend {
        eval_gpu(&loss, &shape, &z, &targets, repeat, by_pass, tuning)?
    } else {
        let run = || segloss::cpu::forward_backward(&loss, &shape, &z, targets.view());
        let out = run()?;
        let timing = Timing::cpu(repeat, || {
            std::hint::black_box(run()).ok();
        });
        (out, "cpu reference".to_string(), timing, Vec::new())
    };

    if let Some(path) = grad_path {
        write_f32_npy("gradient", path, &shape.dims(), &out.grad)?;
    }

    let reduction = loss.reduction();
    let mut obj = Map::new();
    let loss_value = if reduction == Reduction::None {
        Value::Array(out.loss.iter().map(|&x| num(x)).collect())
    } else {
        num(out.loss.first().copied().unwrap_or(f32::NAN))
    };
    obj.insert("loss".into(), loss_value);
    obj.insert("loss_shape".into(), json!(loss.loss_shape(&shape, kind)?));
    obj.insert("loss_name".into(), json!(loss.name()));
    obj.insert(
        "params".into(),
        Value::Object(
            params
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        ),
    );
    let reduction_name = match reduction {
        Reduction::Mean => "mean",
        Reduction::Sum => "sum",
        Reduction::None => "none",
    };
    obj.insert("reduction".into(), json!(reduction_name));
    obj.insert(
        "target".into(),
        json!(match kind {
            TargetKind::Labels => "labels",
            TargetKind::Dense => "dense",
        }),
    );
    obj.insert("shape".into(), json!(shape.dims()));
    obj.insert(
        "backend".into(),
        json!(if gpu_backend { "gpu" } else { "cpu" }),
    );
    obj.insert("adapter".into(), json!(adapter));
    obj.insert("shaders".into(), json!(shaders_id()));
    if let Some(path) = grad_path {
        obj.insert("grad".into(), json!(path));
    }
    if let Some(r) = repeat {
        obj.insert("repeat".into(), json!(r));
    }
    timing.insert_into(&mut obj);
    if by_pass {
        obj.insert("passes".into(), passes_json(&pass_times));
    }
    print_out(&format!("{}\n", Value::Object(obj)))?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// edt

fn edt(args: &[String]) -> CliResult<ExitCode> {
    use segloss::distance::{DistanceOptions, Method};
    const C: &str = "edt";
    let flags = parse_flags(
        C,
        args,
        &[
            flag("mask"),
            flag("spacing"),
            flag("signed"),
            flag("method"),
            flag("backend"),
            flag("out"),
            flag("repeat"),
        ],
    )?;
    let mask_path = required(C, &flags, "mask")?;
    let gpu_backend = backend_flag(C, &flags)?;
    let repeat = repeat_flag(C, &flags)?;
    let signed = match get(&flags, "signed") {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => return usage(format!("{C}: --signed takes no value, got `{v}`")),
    };
    let method = match get(&flags, "method") {
        None => Method::Exact,
        Some(m) => m
            .parse::<Method>()
            .or_else(|e| usage(format!("{C}: --method: {e}")))?,
    };
    if !gpu_backend && method != Method::Exact {
        return usage(format!(
            "{C}: the cpu backend computes the exact transform only (--method exact)"
        ));
    }
    let spacing: Vec<f32> = match get(&flags, "spacing") {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|x| x.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .or_else(|_| {
                usage(format!(
                    "{C}: --spacing expects comma-separated numbers, got `{list}`"
                ))
            })?,
    };

    let a = read_npy("mask", mask_path)?;
    let masks: Vec<bool> = match a.values {
        Values::Int(v) => v.into_iter().map(|m| m != 0).collect(),
        Values::U64(v) => v.into_iter().map(|m| m != 0).collect(),
        Values::F32(_) | Values::F64(_) => {
            return failed(format!(
                "the mask file `{mask_path}` has dtype {}; masks are an integer or bool array \
                 (threshold probabilities first, e.g. (p > 0.5).astype(np.uint8))",
                a.descr
            ))
        }
    };
    let dims = a.dims;
    if !(2..=4).contains(&dims.len()) {
        return failed(format!(
            "the mask file `{mask_path}` has shape {}; expected [N, *S] with 1 to 3 spatial axes",
            fmt_dims(&dims)
        ));
    }
    let (count, spatial) = (dims[0], &dims[1..]);
    if count == 0 {
        return failed(format!(
            "the mask file `{mask_path}` holds no masks (N = 0)"
        ));
    }
    let options = DistanceOptions {
        spacing: spacing.clone(),
        signed,
        method,
        ..Default::default()
    };

    let (out, adapter, timing) = if gpu_backend {
        let (gpu, kernels) = open_gpu(None)?;
        let (device, queue) = (&gpu.device, &gpu.queue);
        let plan = kernels.distance_plan(count, spatial, &options)?;
        let words: Vec<u32> = masks.iter().map(|&m| u32::from(m)).collect();
        let mask_buf = upload(device, "masks", bytemuck::cast_slice(&words));
        let out_buf = zeros(device, "distances", plan.len());
        let mut encoder = device.create_command_encoder(&Default::default());
        plan.record(&mut encoder, &mask_buf, &out_buf)?;
        wait(device, queue.submit([encoder.finish()]))?;
        gpu_errors()?;
        let out: Vec<f32> = download(device, queue, &out_buf, plan.len())?;
        let mut timing = Timing::default();
        if let Some(r) = repeat {
            let ts = Timestamps::new(&gpu);
            timing = time_gpu(&gpu, &ts, r, |enc| {
                Ok(plan.record(enc, &mask_buf, &out_buf)?)
            })?;
        }
        (out, gpu.adapter.get_info().name, timing)
    } else {
        // The checks the GPU plan makes, so both backends refuse the same input.
        options.validate(spatial)?;
        let s: usize = spatial.iter().product();
        let run = || -> Vec<f32> {
            masks
                .chunks(s.max(1))
                .flat_map(|m| {
                    let d = if signed {
                        segloss::cpu::distance::signed_map(m, spatial, &spacing)
                    } else {
                        segloss::cpu::distance::edt(m, spatial, &spacing)
                    };
                    d.into_iter().map(|x| x as f32)
                })
                .collect()
        };
        let out = run();
        let timing = Timing::cpu(repeat, || {
            std::hint::black_box(run());
        });
        (out, "cpu reference".to_string(), timing)
    };

    if let Some(path) = get(&flags, "out") {
        write_f32_npy("distances", path, &dims, &out)?;
    }
    let sum: f64 = out.iter().map(|&x| f64::from(x)).sum();
    let max = out.iter().fold(0.0f32, |m, &x| m.max(x));
    let mut obj = Map::new();
    obj.insert("shape".into(), json!(dims));
    obj.insert(
        "spacing".into(),
        Value::Array(spacing.iter().map(|&x| num(x)).collect()),
    );
    obj.insert("signed".into(), json!(signed));
    obj.insert(
        "method".into(),
        json!(get(&flags, "method").unwrap_or("exact")),
    );
    obj.insert(
        "backend".into(),
        json!(if gpu_backend { "gpu" } else { "cpu" }),
    );
    obj.insert("adapter".into(), json!(adapter));
    obj.insert("shaders".into(), json!(shaders_id()));
    obj.insert("sum".into(), num64(sum));
    obj.insert("max".into(), num(max));
    if let Some(path) = get(&flags, "out") {
        obj.insert("out".into(), json!(path));
    }
    if let Some(r) = repeat {
        obj.insert("repeat".into(), json!(r));
    }
    timing.insert_into(&mut obj);
    print_out(&format!("{}\n", Value::Object(obj)))?;
    Ok(ExitCode::SUCCESS)
}

/// Timestamp queries around the recorded passes, where the device has them.
struct Timestamps {
    set: segloss::wgpu::QuerySet,
    resolve: segloss::wgpu::Buffer,
    period_ns: f64,
}

impl Timestamps {
    fn new(gpu: &Gpu) -> Option<Timestamps> {
        use segloss::wgpu::{self, Features};
        let need = Features::TIMESTAMP_QUERY | Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        if !gpu.device.features().contains(need) {
            return None;
        }
        let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("segloss eval timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("segloss eval timestamps resolve"),
            size: 2 * wgpu::QUERY_SIZE as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Some(Timestamps {
            set,
            resolve,
            period_ns: gpu.queue.get_timestamp_period() as f64,
        })
    }
}

fn eval_gpu(
    loss: &Loss,
    shape: &Shape,
    z: &[f32],
    targets: &OwnedTargets,
    repeat: Option<usize>,
    by_pass: bool,
    tuning: Option<bool>,
) -> CliResult<(LossOutput, String, Timing, Vec<PassSummary>)> {
    let (gpu, kernels) = open_gpu(tuning)?;
    let (device, queue) = (&gpu.device, &gpu.queue);
    let adapter = gpu.adapter.get_info().name;
    let view = targets.view();
    let plan = kernels.plan(loss, shape.clone(), view.kind())?;
    let z_buf = upload(device, "logits", bytemuck::cast_slice(z));
    let y_buf = upload(device, "targets", view.as_bytes());
    let loss_buf = zeros(device, "loss", plan.loss_len());
    let grad_buf = zeros(device, "grad", shape.numel());
    let inputs = Inputs {
        logits: &z_buf,
        targets: &y_buf,
    };
    let outputs = Outputs::new(&loss_buf, &grad_buf);

    let mut encoder = device.create_command_encoder(&Default::default());
    plan.record(&mut encoder, &inputs, &outputs)?;
    let index = queue.submit([encoder.finish()]);
    wait(device, index)?;
    gpu_errors()?;
    read_status(device, queue, &plan)?.check()?;
    let out = LossOutput {
        loss: download(device, queue, &loss_buf, plan.loss_len())?,
        grad: download(device, queue, &grad_buf, shape.numel())?,
    };
    gpu_errors()?;

    let mut timing = Timing::default();
    let mut pass_times = Vec::new();
    if let Some(r) = repeat {
        let ts = Timestamps::new(&gpu);
        timing = time_gpu(&gpu, &ts, r, |enc| {
            plan.record(enc, &inputs, &outputs)?;
            Ok(())
        })?;
        read_status(device, queue, &plan)?.check()?;
        if by_pass {
            check_pass_timing(&gpu, "eval")?;
            pass_times = time_passes(&gpu, &kernels, r, |enc| {
                plan.record(enc, &inputs, &outputs)?;
                Ok(())
            })?;
        }
    }
    Ok((out, adapter, timing, pass_times))
}

// ---------------------------------------------------------------------------------------------
// check

/// SplitMix64: a tiny seeded generator, so the tool needs no RNG crate.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

#[derive(Clone, Copy)]
enum Gen {
    /// Class indices; with `Some(i)`, about one pixel in six is `i`.
    Labels(Option<i32>),
    /// Values in [0, 1]; `true` rounds them to {0, 1}.
    Dense(bool),
}

struct Case {
    loss: &'static str,
    params: &'static [&'static str],
    dims: &'static [usize],
    target: Gen,
}

const fn case(
    loss: &'static str,
    params: &'static [&'static str],
    dims: &'static [usize],
    target: Gen,
) -> Case {
    Case {
        loss,
        params,
        dims,
        target,
    }
}

const D2: &[usize] = &[2, 3, 17, 19];
const D3: &[usize] = &[1, 4, 5, 6, 7];
const D1: &[usize] = &[3, 5, 37];
const C1: &[usize] = &[2, 1, 9, 11];
const C1_3D: &[usize] = &[1, 1, 5, 6, 7];
// Shapes of many workgroups and subgroups in both tunings, the last of each ragged: the small
// shapes above fit in one or two, so a reduction that loses or overwrites a subgroup's partial
// (one assuming a subgroup size, say) could still pass with them.
const WIDE: &[usize] = &[2, 5, 67, 131];
const WIDE_3D: &[usize] = &[1, 3, 19, 21, 23];
const WIDE_C1: &[usize] = &[2, 1, 67, 131];
// Wide shapes whose planes are a multiple of four pixels: the software tuning's region gradient
// then reads four neighbouring pixels at once (ALIGNED4 in shaders/region.wgsl).
const WIDE_ALIGNED: &[usize] = &[2, 5, 68, 131];
const WIDE_ALIGNED_3D: &[usize] = &[1, 3, 20, 21, 23];

const CASES: &[Case] = &[
    // cross-entropy
    case("cross-entropy", &[], D2, Gen::Labels(None)),
    case(
        "cross-entropy",
        &["label_smoothing=0.1", "weight=0.5,2,1"],
        D2,
        Gen::Labels(None),
    ),
    case(
        "cross-entropy",
        &["ignore_index=255"],
        D2,
        Gen::Labels(Some(255)),
    ),
    case(
        "cross-entropy",
        &["weight=0.3,1.7,1", "label_smoothing=0.2"],
        D2,
        Gen::Labels(Some(-100)),
    ),
    case("cross-entropy", &[], D2, Gen::Dense(false)),
    case(
        "cross-entropy",
        &["label_smoothing=0.1", "reduction=sum"],
        D2,
        Gen::Dense(false),
    ),
    case(
        "cross-entropy",
        &["reduction=none"],
        D2,
        Gen::Labels(Some(-100)),
    ),
    case("cross-entropy", &["reduction=sum"], D3, Gen::Labels(None)),
    case("cross-entropy", &[], D1, Gen::Labels(None)),
    case("cross-entropy", &[], C1, Gen::Labels(None)),
    // bce
    case("bce", &[], D2, Gen::Dense(false)),
    case(
        "bce",
        &["pos_weight=3,0.5,1.25", "weight=0.5,2,1.5"],
        D2,
        Gen::Dense(true),
    ),
    case("bce", &["reduction=none"], D3, Gen::Dense(false)),
    case("bce", &[], C1, Gen::Labels(None)),
    case(
        "bce",
        &["pos_weight=2", "reduction=sum"],
        C1_3D,
        Gen::Labels(None),
    ),
    case(
        "bce",
        &["ignore_index=255", "reduction=none"],
        C1,
        Gen::Labels(Some(255)),
    ),
    // balanced-bce
    case("balanced-bce", &[], D2, Gen::Dense(true)),
    case("balanced-bce", &["reduction=sum"], D2, Gen::Dense(false)),
    case("balanced-bce", &["reduction=none"], D1, Gen::Dense(true)),
    case("balanced-bce", &[], C1, Gen::Labels(None)),
    case(
        "balanced-bce",
        &["reduction=none"],
        C1_3D,
        Gen::Labels(None),
    ),
    case(
        "balanced-bce",
        &["ignore_index=255"],
        C1,
        Gen::Labels(Some(255)),
    ),
    // focal
    case("focal", &[], D2, Gen::Labels(None)),
    case("focal", &["alpha=0.25", "gamma=0.5"], D2, Gen::Dense(false)),
    case(
        "focal",
        &["activation=softmax", "alpha=0.25"],
        D2,
        Gen::Labels(None),
    ),
    case(
        "focal",
        &[
            "activation=softmax",
            "include_background=false",
            "weight=2,0.5",
        ],
        D2,
        Gen::Labels(None),
    ),
    case(
        "focal",
        &["include_background=false", "reduction=sum"],
        D2,
        Gen::Labels(None),
    ),
    case(
        "focal",
        &["ignore_index=255", "reduction=sum"],
        D2,
        Gen::Labels(Some(255)),
    ),
    case(
        "focal",
        &["activation=softmax", "reduction=none"],
        D3,
        Gen::Labels(None),
    ),
    case(
        "focal",
        &["gamma=0", "weight=0.5,1,2,4"],
        D3,
        Gen::Dense(true),
    ),
    case("focal", &[], C1, Gen::Labels(None)),
    case(
        "focal",
        &["activation=softmax", "gamma=3"],
        D2,
        Gen::Dense(false),
    ),
    case(
        "focal",
        &["activation=softmax", "ignore_index=255", "gamma=0.5"],
        C1,
        Gen::Labels(Some(255)),
    ),
    // region losses
    case("dice", &[], D2, Gen::Labels(None)),
    case(
        "dice",
        &[
            "squared_pred=true",
            "include_background=false",
            "batch=true",
        ],
        D3,
        Gen::Labels(None),
    ),
    case(
        "dice",
        &["soft_label=true", "reduction=none"],
        D2,
        Gen::Dense(false),
    ),
    case(
        "dice",
        &["ignore_index=255", "weight=1,2,0.5"],
        D2,
        Gen::Labels(Some(255)),
    ),
    case("dice", &[], C1, Gen::Labels(None)),
    // The four-pixel statistics walk without a softmax.
    case(
        "dice",
        &[
            "activation=sigmoid",
            "ignore_index=255",
            "include_background=false",
        ],
        WIDE,
        Gen::Labels(Some(255)),
    ),
    case("tversky", &["activation=none"], WIDE_3D, Gen::Dense(false)),
    // ... and the four-pixel gradient walk without a softmax (with cross-entropy, which keeps its
    // own softmax, or with combo's BCE).
    case(
        "combo",
        &["alpha=0.3", "ce_ratio=0.7", "ignore_index=255"],
        WIDE_ALIGNED,
        Gen::Labels(Some(255)),
    ),
    case("combo", &[], WIDE_3D, Gen::Labels(None)),
    case(
        "dice-ce",
        &["activation=sigmoid", "weight=0.5,2,1"],
        WIDE_ALIGNED_3D,
        Gen::Labels(None),
    ),
    case(
        "dice",
        &["activation=none", "squared_pred=true"],
        WIDE_ALIGNED,
        Gen::Labels(None),
    ),
    case("dice-ce", &["activation=none"], WIDE, Gen::Labels(None)),
    // Dense targets in the four-pixel gradient walk (lanes WG apart even on aligned shapes).
    case(
        "dice",
        &["squared_pred=true", "include_background=false"],
        WIDE_ALIGNED,
        Gen::Dense(false),
    ),
    case(
        "tversky",
        &["alpha=0.3", "beta=0.7"],
        WIDE,
        Gen::Dense(true),
    ),
    case(
        "dice-ce",
        &["weight=0.5,2,1", "label_smoothing=0.1"],
        WIDE_3D,
        Gen::Dense(false),
    ),
    case(
        "dice-ce",
        &["squared_pred=true"],
        WIDE_ALIGNED,
        Gen::Dense(true),
    ),
    case(
        "dice-focal",
        &["alpha=0.25", "include_background=false"],
        WIDE_3D,
        Gen::Dense(false),
    ),
    case("combo", &["ce_ratio=0.3"], WIDE, Gen::Dense(false)),
    case(
        "dice-ce",
        &["activation=sigmoid", "label_smoothing=0.1"],
        WIDE_ALIGNED,
        Gen::Dense(false),
    ),
    // The Wasserstein Dice loss in the four-pixel gradient walk.
    case(
        "wasserstein-dice",
        &["dist_matrix=0,1,1,1,0,0.5,1,0.5,0", "weighting_mode=GDL"],
        WIDE_3D,
        Gen::Labels(None),
    ),
    // Sensitivity-specificity in the four-pixel gradient walk.
    case(
        "sensitivity-specificity",
        &["r=0.3", "ignore_index=255"],
        WIDE_ALIGNED,
        Gen::Labels(Some(255)),
    ),
    case(
        "sensitivity-specificity",
        &["batch=true", "include_background=false"],
        WIDE_3D,
        Gen::Labels(None),
    ),
    case("jaccard", &[], D2, Gen::Labels(None)),
    case(
        "jaccard",
        &["reduction=sum", "batch=true"],
        D3,
        Gen::Dense(true),
    ),
    case("tversky", &["alpha=0.3", "beta=0.7"], D2, Gen::Labels(None)),
    case("tversky", &["soft_label=true"], D1, Gen::Dense(false)),
    case("focal-tversky", &[], D2, Gen::Labels(None)),
    case(
        "focal-tversky",
        &["gamma=1.5", "reduction=none"],
        D3,
        Gen::Labels(None),
    ),
    case("asymmetric", &[], D2, Gen::Labels(None)),
    case(
        "asymmetric",
        &["f_beta=2", "include_background=false"],
        D3,
        Gen::Dense(true),
    ),
    case("generalized-dice", &[], D2, Gen::Labels(None)),
    case(
        "generalized-dice",
        &["w_type=simple", "batch=true"],
        D3,
        Gen::Labels(None),
    ),
    case(
        "generalized-dice",
        &["w_type=uniform", "reduction=none"],
        C1,
        Gen::Labels(None),
    ),
    case("log-cosh-dice", &[], D2, Gen::Labels(None)),
    case("log-cosh-dice", &["reduction=none"], D1, Gen::Dense(true)),
    case("sensitivity-specificity", &[], D2, Gen::Labels(None)),
    case(
        "sensitivity-specificity",
        &["r=0.3", "batch=true"],
        D3,
        Gen::Dense(false),
    ),
    case("dice-ce", &[], D2, Gen::Labels(None)),
    case(
        "dice-ce",
        &["weight=0.5,2,1,1.5", "label_smoothing=0.1", "batch=true"],
        D3,
        Gen::Labels(None),
    ),
    case("dice-ce", &["reduction=sum"], D2, Gen::Dense(false)),
    case("dice-ce", &[], C1, Gen::Labels(None)),
    case("dice-focal", &[], D2, Gen::Labels(None)),
    case("dice-focal", &["gamma=0.5"], D2, Gen::Dense(false)),
    case(
        "dice-focal",
        &["alpha=0.25", "include_background=false", "reduction=none"],
        D3,
        Gen::Labels(None),
    ),
    case("generalized-dice-focal", &[], D2, Gen::Labels(None)),
    case(
        "generalized-dice-focal",
        &["w_type=simple", "reduction=sum"],
        D1,
        Gen::Dense(true),
    ),
    case("combo", &[], C1, Gen::Labels(None)),
    case(
        "combo",
        &["alpha=0.3", "ce_ratio=0.7"],
        D2,
        Gen::Dense(true),
    ),
    case(
        "wasserstein-dice",
        &["dist_matrix=0,1,1,1,0,0.5,1,0.5,0"],
        D2,
        Gen::Labels(None),
    ),
    case(
        "wasserstein-dice",
        &[
            "dist_matrix=0,1,1,1,1,0,1,1,1,1,0,1,1,1,1,0",
            "weighting_mode=GDL",
            "reduction=none",
        ],
        D3,
        Gen::Labels(None),
    ),
    case("unified-focal", &[], C1, Gen::Labels(None)),
    case(
        "unified-focal",
        &["weight=0.3", "delta=0.6", "ignore_index=255"],
        &[2, 2, 9, 11],
        Gen::Labels(Some(255)),
    ),
    case("boundary", &[], D2, Gen::Labels(None)),
    case(
        "boundary",
        &[
            "include_background=false",
            "spacing=1,2,0.5",
            "reduction=none",
        ],
        D3,
        Gen::Labels(None),
    ),
    case("hausdorff-dt", &[], D2, Gen::Labels(None)),
    case(
        "hausdorff-dt",
        &["alpha=1", "batch=true", "spacing=0.5,1.5"],
        D2,
        Gen::Dense(true),
    ),
    case("log-hausdorff-dt", &[], D3, Gen::Labels(None)),
    case(
        "log-hausdorff-dt",
        &["reduction=none"],
        C1,
        Gen::Labels(None),
    ),
    case("lovasz-softmax", &[], D2, Gen::Labels(None)),
    case(
        "lovasz-softmax",
        &["classes=all", "per_image=true", "ignore_index=255"],
        D3,
        Gen::Labels(Some(255)),
    ),
    case("lovasz-hinge", &[], C1, Gen::Labels(None)),
    case(
        "lovasz-hinge",
        &["per_image=true"],
        C1_3D,
        Gen::Labels(None),
    ),
    case("topk", &[], D2, Gen::Labels(None)),
    case(
        "topk",
        &["k=30", "weight=0.5,1,2,1", "ignore_index=255"],
        D3,
        Gen::Labels(Some(255)),
    ),
    case("cldice", &[], D2, Gen::Labels(None)),
    case(
        "cldice",
        &["iter_=1", "include_background=false", "reduction=none"],
        D3,
        Gen::Labels(None),
    ),
    case("dice-cldice", &["alpha=0.3"], D2, Gen::Dense(true)),
    case("active-contour", &[], C1, Gen::Labels(None)),
    case(
        "active-contour",
        &["lambda_region=0.5", "w_length=2"],
        C1_3D,
        Gen::Dense(true),
    ),
    case("exp-log", &[], D2, Gen::Labels(None)),
    case(
        "exp-log",
        &["gamma_dice=1", "gamma_ce=1"],
        D3,
        Gen::Labels(None),
    ),
    // Every family again on shapes of many workgroups (see WIDE).
    case(
        "cross-entropy",
        &["ignore_index=255"],
        WIDE,
        Gen::Labels(Some(255)),
    ),
    case(
        "cross-entropy",
        &["reduction=sum", "weight=0.2,0.4,0.8"],
        WIDE_3D,
        Gen::Dense(false),
    ),
    case("focal", &["use_softmax=true"], WIDE, Gen::Labels(None)),
    case("bce", &[], WIDE_C1, Gen::Labels(None)),
    // Class weights, smoothing and ignored pixels in every lane of the software tuning's
    // four-pixel gradient walk.
    case(
        "dice-ce",
        &[
            "weight=0.5,2,1,1.5,0.7",
            "label_smoothing=0.1",
            "ignore_index=255",
        ],
        WIDE,
        Gen::Labels(Some(255)),
    ),
    case("generalized-dice", &[], WIDE_3D, Gen::Dense(false)),
    case(
        "dice-ce",
        &["weight=0.5,2,1,1.5,0.7", "ignore_index=255"],
        WIDE_ALIGNED,
        Gen::Labels(Some(255)),
    ),
    case(
        "dice",
        &["include_background=false", "squared_pred=true"],
        WIDE_ALIGNED_3D,
        Gen::Labels(None),
    ),
    // The sigmoid focal term in the four-pixel gradient walk (and its two-valued targets' form).
    case(
        "dice-focal",
        &[
            "alpha=0.25",
            "include_background=false",
            "weight=0.5,2,1,1.5",
            "ignore_index=255",
        ],
        WIDE_ALIGNED,
        Gen::Labels(Some(255)),
    ),
    case(
        "generalized-dice-focal",
        &["gamma=0.5"],
        WIDE_3D,
        Gen::Labels(None),
    ),
    case(
        "focal",
        &["alpha=0.25", "gamma=3", "ignore_index=255"],
        WIDE_3D,
        Gen::Labels(Some(255)),
    ),
    case("hausdorff-dt", &[], WIDE, Gen::Labels(None)),
    case("boundary", &[], WIDE_3D, Gen::Labels(None)),
    // The fused distance pass's four-pixel walk (`fused_four` in shaders/region.wgsl) without
    // the background class, and over the batch.
    case(
        "boundary",
        &["include_background=false"],
        WIDE,
        Gen::Labels(None),
    ),
    case(
        "hausdorff-dt",
        &["include_background=true", "batch=true"],
        WIDE_3D,
        Gen::Labels(None),
    ),
    case("lovasz-softmax", &[], WIDE, Gen::Labels(None)),
    case("lovasz-hinge", &[], WIDE_C1, Gen::Labels(None)),
    case("topk", &["k=30"], WIDE_3D, Gen::Labels(None)),
    case("cldice", &[], WIDE, Gen::Labels(None)),
    case("active-contour", &[], WIDE_C1, Gen::Labels(None)),
];

/// max |got - want| / max(max |want|, 1e-3): the relative error of a loss (or of every element
/// of an unreduced one, against its largest) or of a gradient, with an absolute floor near zero.
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let scale = want.iter().fold(0.0f64, |m, &w| m.max((w as f64).abs()));
    let err = got.iter().zip(want).fold(0.0f64, |m, (&g, &w)| {
        let e = (g as f64 - w as f64).abs();
        if e.is_nan() {
            f64::INFINITY
        } else {
            m.max(e)
        }
    });
    err / scale.max(1e-3)
}

fn check(args: &[String]) -> CliResult<ExitCode> {
    const TOL: f64 = 1e-4;
    let flags = parse_flags(
        "check",
        args,
        &[
            flag("seed"),
            flag("tuning"),
            flag("logit-scale"),
            flag("random"),
        ],
    )?;
    let tuning = tuning_flag("check", &flags)?;
    let scale = match get(&flags, "logit-scale") {
        None => 4.0,
        Some(s) => match s.parse::<f32>() {
            Ok(v) if v.is_finite() && v > 0.0 => v,
            _ => usage(format!(
                "check: --logit-scale must be a positive number, got `{s}`"
            ))?,
        },
    };
    // --seed and --random: whole numbers, 0 when absent.
    let whole = |name: &str| match get(&flags, name) {
        None => Ok(0),
        Some(s) => s.parse::<u64>().or_else(|_| {
            usage(format!(
                "check: --{name} must be a whole number >= 0, got `{s}`"
            ))
        }),
    };
    let seed = whole("seed")?;
    let random = whole("random")?;
    // Every registered loss must have cases: a loss added without them is a failure here.
    for name in Loss::NAMES {
        if !CASES.iter().any(|c| c.loss == *name) {
            return failed(format!("check has no cases for the loss `{name}`"));
        }
    }
    // The fixed cases, then `random` copies of each on shapes drawn from the seed: the same loss,
    // parameters, targets, C and dimensionality, N from 1 to 3 and each extent from 1 to 13.
    let mut cases: Vec<(&Case, Vec<usize>)> = CASES.iter().map(|c| (c, c.dims.to_vec())).collect();
    let mut draw = Rng(seed ^ 0x05EE_D0F5_A4E5);
    for base in CASES {
        for _ in 0..random {
            let mut dims = vec![1 + draw.below(3), base.dims[1]];
            for _ in 2..base.dims.len() {
                dims.push(1 + draw.below(13));
            }
            cases.push((base, dims));
        }
    }
    let (gpu, kernels) = open_gpu(tuning)?;
    let mut rows: Vec<[String; 7]> = Vec::new();
    let mut failures = 0;
    for (k, (c, case_dims)) in cases.iter().enumerate() {
        let mut rng = Rng(seed ^ (k as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        let params = if c.params.is_empty() {
            "-".to_string()
        } else {
            c.params.join(" ")
        };
        let dims = case_dims
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x");
        let target = match c.target {
            Gen::Labels(Some(i)) => format!("labels, ignore {i}"),
            Gen::Labels(None) => "labels".to_string(),
            Gen::Dense(true) => "dense 0/1".to_string(),
            Gen::Dense(false) => "dense".to_string(),
        };
        let result = run_case(&kernels, &gpu, c, case_dims, &mut rng, scale);
        let (le, ge, verdict) = match result {
            Ok((le, ge)) => {
                let pass = le <= TOL && ge <= TOL;
                if !pass {
                    failures += 1;
                }
                (
                    format!("{le:.2e}"),
                    format!("{ge:.2e}"),
                    if pass { "PASS" } else { "FAIL" }.to_string(),
                )
            }
            Err(e) => {
                failures += 1;
                let msg = match e {
                    CliError::Usage(m) | CliError::Failed(m) => one_line(&m),
                };
                ("-".into(), "-".into(), format!("FAIL: {msg}"))
            }
        };
        rows.push([c.loss.to_string(), params, target, dims, le, ge, verdict]);
    }
    let header = [
        "loss",
        "params",
        "target",
        "shape",
        "loss rel err",
        "grad err",
        "result",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()).take(6) {
            *w = (*w).max(cell.len());
        }
    }
    let fmt_row = |cells: &[&str]| -> String {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 < cells.len() {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        line.push('\n');
        line
    };
    let mut s = format!(
        "segloss check: GPU ({}, {} tuning) against the CPU reference, seed {seed}, logits in \
         ±{scale}, tolerance {TOL:.0e}\n\
         loss rel err: max |gpu - cpu| / max(max |cpu loss|, 1e-3); \
         grad err: max |gpu - cpu| / max(max |cpu grad|, 1e-3)\n\n",
        gpu.describe(),
        if kernels.software_tuned() {
            "software"
        } else {
            "GPU"
        }
    );
    s.push_str(&fmt_row(&header));
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    let rule_refs: Vec<&str> = rule.iter().map(|x| x.as_str()).collect();
    s.push_str(&fmt_row(&rule_refs));
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(|x| x.as_str()).collect();
        s.push_str(&fmt_row(&cells));
    }
    // With --random, the fixed cases' count too: their rows come first, in CASES' order.
    let split = if random > 0 {
        format!(
            " ({} fixed, {} on random shapes)",
            CASES.len(),
            rows.len() - CASES.len()
        )
    } else {
        String::new()
    };
    s.push_str(&format!(
        "\n{} of {} cases passed{split}\n",
        rows.len() - failures,
        rows.len()
    ));
    print_out(&s)?;
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Hausdorff's map thresholds the prediction at p > 0.5, a step in the loss: a pixel whose
/// largest softmax probability lies within f32 rounding of 0.5 (f64 on the CPU) may take either
/// side, and then the maps differ by whole distances. About one random case in a few hundred
/// has one; `check` moves such a pixel's largest logit up by 1e-3 (p by ~2.5e-4), so that a
/// failure means a fault. (tests/distance.rs checks the GPU's side within a few ulps.)
fn away_from_half(z: &mut [f32], shape: &Shape) {
    let (c, s) = (shape.c(), shape.s());
    if c < 2 {
        return;
    }
    for pixel in 0..shape.pixels() {
        let at = |k: usize| (pixel / s * c + k) * s + pixel % s;
        let top = (0..c)
            .max_by(|&a, &b| z[at(a)].total_cmp(&z[at(b)]))
            .unwrap_or(0);
        let sum: f64 = (0..c)
            .map(|k| (z[at(k)] as f64 - z[at(top)] as f64).exp())
            .sum();
        if (1.0 / sum - 0.5).abs() < 1e-6 {
            z[at(top)] += 1e-3;
        }
    }
}

/// The Lovász losses sort their errors, and an error's gradient follows its place in the order.
/// Two errors of a class within rounding of each other may come out in either order on the GPU
/// (f32) and in the CPU reference (f64), and then the two pixels trade gradient values that
/// differ by up to ~1e-3 of the largest: a random small shape hits one about once in a thousand
/// cases. So `check` moves one logit of each such pair by 1e-2 (and looks again, up to four
/// times), taking every pixel of a class as one segment (a superset of the loss's segments), so
/// that a failure means a fault. Errors as the losses take them: |fg - p_c| under a softmax
/// (C > 1), the hinge 1 - z·(2·fg - 1) for C = 1.
fn errors_apart(z: &mut [f32], shape: &Shape, labels: &[i32]) {
    let (c, s) = (shape.c(), shape.s());
    let at = |pixel: usize, k: usize| (pixel / s * c + k) * s + pixel % s;
    for _ in 0..4 {
        let mut moved = false;
        for k in 0..c {
            let error = |z: &[f32], pixel: usize| -> f64 {
                let fg = f64::from(u8::from(labels[pixel] == if c == 1 { 1 } else { k as i32 }));
                if c == 1 {
                    return 1.0 - f64::from(z[at(pixel, 0)]) * (2.0 * fg - 1.0);
                }
                let top = (0..c)
                    .map(|j| f64::from(z[at(pixel, j)]))
                    .fold(f64::MIN, f64::max);
                let sum: f64 = (0..c)
                    .map(|j| (f64::from(z[at(pixel, j)]) - top).exp())
                    .sum();
                (fg - (f64::from(z[at(pixel, k)]) - top).exp() / sum).abs()
            };
            let mut order: Vec<(f64, usize)> =
                (0..shape.pixels()).map(|p| (error(z, p), p)).collect();
            order.sort_by(|a, b| a.0.total_cmp(&b.0));
            for pair in order.windows(2) {
                let ((a, _), (b, pixel)) = (pair[0], pair[1]);
                if b - a <= 1e-5 * b.abs().max(1e-3) {
                    z[at(pixel, k)] += 1e-2;
                    moved = true;
                }
            }
        }
        if !moved {
            return;
        }
    }
}

/// Case `c` (its loss, parameters and targets) on a shape of `dims`: its own, or a random one.
fn run_case(
    kernels: &Kernels,
    gpu: &Gpu,
    c: &Case,
    dims: &[usize],
    rng: &mut Rng,
    scale: f32,
) -> CliResult<(f64, f64)> {
    let params: Vec<(String, String)> = c
        .params
        .iter()
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    let loss = Loss::from_name(c.loss, &params)?;
    let shape = Shape::from_dims(dims)?;
    // Without an activation a loss takes probabilities: values in [0, 1]. (Logits there made
    // Dice's sums near zero on small random shapes, where f32 rounding alone exceeds 1e-4.)
    let probabilities = c.params.contains(&"activation=none");
    let mut z: Vec<f32> = (0..shape.numel())
        .map(|_| {
            if probabilities {
                rng.unit()
            } else {
                (rng.unit() * 2.0 - 1.0) * scale
            }
        })
        .collect();
    if c.loss.contains("hausdorff") {
        away_from_half(&mut z, &shape);
    }
    // With one channel every loss but the softmax cross-entropies reads labels as a binary mask.
    let classes = if shape.c() == 1 && c.loss != "cross-entropy" && c.loss != "topk" {
        2
    } else {
        shape.c()
    };
    let targets = match c.target {
        Gen::Labels(ignore) => OwnedTargets::Labels(
            (0..shape.pixels())
                .map(|_| match ignore {
                    Some(i) if rng.below(6) == 0 => i,
                    _ => rng.below(classes) as i32,
                })
                .collect(),
        ),
        Gen::Dense(binary) => OwnedTargets::Dense(
            (0..shape.numel())
                .map(|_| {
                    let v = rng.unit();
                    if binary {
                        v.round()
                    } else {
                        v
                    }
                })
                .collect(),
        ),
    };
    if let (true, OwnedTargets::Labels(labels)) = (c.loss.starts_with("lovasz"), &targets) {
        errors_apart(&mut z, &shape, labels);
    }
    let want = segloss::cpu::forward_backward(&loss, &shape, &z, targets.view())?;
    let got = kernels.run_blocking(&gpu.queue, &loss, &shape, &z, targets.view())?;
    gpu_errors()?;
    Ok((
        rel_err(&got.loss, &want.loss),
        rel_err(&got.grad, &want.grad),
    ))
}

// ---------------------------------------------------------------------------------------------
// bench

/// Passes over the logits (and targets) a loss's kernels need: one for the pixel-wise losses
/// and for boundary (its map comes from the targets alone, and its gradient needs nothing from
/// the statistics), two for the others (statistics, errors or the prediction's map first, then
/// the gradient).
fn logit_passes(name: &str) -> u64 {
    match name {
        "cross-entropy" | "bce" | "balanced-bce" | "focal" | "boundary" => 1,
        _ => 2,
    }
}

/// Channels a loss is benched with at the given class count.
fn bench_channels(name: &str, c: usize) -> usize {
    match name {
        "lovasz-hinge" | "active-contour" => 1,
        "unified-focal" => 2,
        _ => c,
    }
}

/// Default parameters for the bench (only what has no default).
fn bench_params(name: &str, c: usize) -> Vec<(String, String)> {
    if name == "wasserstein-dice" {
        let m: Vec<String> = (0..c * c)
            .map(|i| {
                if i / c == i % c {
                    "0".into()
                } else {
                    "1".into()
                }
            })
            .collect();
        return vec![("dist_matrix".into(), m.join(","))];
    }
    Vec::new()
}

/// The passes of one label: how many the recording has, and their summed median time.
struct PassSummary {
    label: String,
    count: usize,
    ms: f64,
}

/// Fails unless the device has timestamp queries, which `--passes` needs.
fn check_pass_timing(gpu: &Gpu, command: &str) -> CliResult<()> {
    let features = gpu.device.features();
    if !features.contains(segloss::wgpu::Features::TIMESTAMP_QUERY) {
        return failed(format!(
            "{command}: --passes needs timestamp queries, which {} does not have",
            gpu.adapter.get_info().name
        ));
    }
    Ok(())
}

/// The `"passes"` array of the JSON output: label, count and summed median ms of each.
fn passes_json(passes: &[PassSummary]) -> Value {
    let rows = passes.iter();
    Value::Array(
        rows.map(|p| json!({"label": p.label, "count": p.count, "ms": num64(p.ms)}))
            .collect(),
    )
}

/// Times every compute pass of what `record` records, `repeat` times after one warm-up call,
/// each call submitted and read on its own: the median of each pass over the calls, summed
/// per label in the order the labels first appear.
fn time_passes(
    gpu: &Gpu,
    kernels: &Kernels,
    repeat: usize,
    mut record: impl FnMut(&mut segloss::wgpu::CommandEncoder) -> CliResult<()>,
) -> CliResult<Vec<PassSummary>> {
    kernels.enable_pass_timing(segloss::profile::MAX_TIMED_PASSES)?;
    let mut calls: Vec<Vec<segloss::profile::PassTime>> = Vec::new();
    let result = (|| -> CliResult<()> {
        for k in 0..=repeat {
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            record(&mut encoder)?;
            gpu.queue.submit([encoder.finish()]);
            let times = kernels.read_pass_times(&gpu.queue)?;
            if k > 0 {
                calls.push(times);
            }
        }
        Ok(())
    })();
    kernels.disable_pass_timing();
    result?;
    let mut out: Vec<PassSummary> = Vec::new();
    let passes = calls.first().map_or(0, Vec::len);
    if calls.iter().any(|c| c.len() != passes) {
        return failed("--passes: the calls recorded different numbers of passes");
    }
    for i in 0..passes {
        let label = &calls[0][i].label;
        let median = median(calls.iter().map(|c| c[i].ms).collect());
        match out.iter_mut().find(|p| &p.label == label) {
            Some(p) => {
                p.count += 1;
                p.ms += median;
            }
            None => out.push(PassSummary {
                label: label.clone(),
                count: 1,
                ms: median,
            }),
        }
    }
    Ok(out)
}

/// Untimed calls before the timed ones fill at least this long (and are at least one): a GPU
/// that idled while the CPU reference ran (or while a Python reference prepared its inputs)
/// clocks down, and one short call does not bring it back. On an H200, one warm-up call after
/// the CPU reference left latency-bound passes up to 4.8× slower than back-to-back runs.
const WARM_UP: Duration = Duration::from_millis(200);

/// Submits what `record` records `repeat` times, after untimed warm-up calls (`WARM_UP`), each
/// call on its own and waited for; the timestamps, where there are, bracket the recorded
/// passes and are read back outside the timed call.
fn time_gpu(
    gpu: &Gpu,
    ts: &Option<Timestamps>,
    repeat: usize,
    mut record: impl FnMut(&mut segloss::wgpu::CommandEncoder) -> CliResult<()>,
) -> CliResult<Timing> {
    let (device, queue) = (&gpu.device, &gpu.queue);
    let warm = Instant::now();
    loop {
        let mut encoder = device.create_command_encoder(&Default::default());
        record(&mut encoder)?;
        wait(device, queue.submit([encoder.finish()]))?;
        if warm.elapsed() >= WARM_UP {
            break;
        }
    }
    let mut wall = Vec::new();
    let mut on_gpu = Vec::new();
    for _ in 0..repeat {
        let mut encoder = device.create_command_encoder(&Default::default());
        if let Some(ts) = ts {
            encoder.write_timestamp(&ts.set, 0);
        }
        record(&mut encoder)?;
        if let Some(ts) = ts {
            encoder.write_timestamp(&ts.set, 1);
        }
        let commands = encoder.finish();
        let t = Instant::now();
        let index = queue.submit([commands]);
        wait(device, index)?;
        wall.push(t.elapsed().as_secs_f64() * 1e3);
        if let Some(ts) = ts {
            let mut encoder = device.create_command_encoder(&Default::default());
            encoder.resolve_query_set(&ts.set, 0..2, &ts.resolve, 0);
            queue.submit([encoder.finish()]);
            let ticks: Vec<u64> = download(device, queue, &ts.resolve, 2)?;
            if ticks[1] >= ticks[0] {
                on_gpu.push((ticks[1] - ticks[0]) as f64 * ts.period_ns / 1e6);
            }
        }
    }
    gpu_errors()?;
    Ok(Timing {
        ms: Some(median(wall)),
        gpu_ms: (!on_gpu.is_empty()).then(|| median(on_gpu)),
    })
}

fn bench(args: &[String]) -> CliResult<ExitCode> {
    const C: &str = "bench";
    let flags = parse_flags(
        C,
        args,
        &[
            flag("preset"),
            flag("losses"),
            flag("repeat"),
            flag("cpu-repeat"),
            FlagSpec {
                name: "no-cpu",
                repeatable: false,
            },
            FlagSpec {
                name: "json",
                repeatable: false,
            },
            FlagSpec {
                name: "passes",
                repeatable: false,
            },
            flag("tuning"),
        ],
    )?;
    let tuning = tuning_flag(C, &flags)?;
    let small = match get(&flags, "preset") {
        None | Some("full") => false,
        Some("small") => true,
        Some(p) => return usage(format!("bench: --preset must be full or small, got `{p}`")),
    };
    let count = |name: &str, default: usize| -> CliResult<usize> {
        match get(&flags, name) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().ok().filter(|&r| r >= 1).ok_or_else(|| {
                CliError::Usage(format!(
                    "bench: --{name} must be a whole number >= 1, got `{v}`"
                ))
            }),
        }
    };
    let repeat = count("repeat", 5)?;
    let cpu_repeat = count("cpu-repeat", 1)?;
    let with_cpu = get(&flags, "no-cpu").is_none();
    let json = get(&flags, "json").is_some();
    let by_pass = get(&flags, "passes").is_some();
    let names: Vec<String> = match get(&flags, "losses") {
        None => Loss::NAMES.iter().map(|s| s.to_string()).collect(),
        Some(list) => {
            let names: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
            if let Some(bad) = names.iter().find(|n| !Loss::NAMES.contains(&n.as_str())) {
                return usage(format!("bench: unknown loss `{bad}` in --losses"));
            }
            names
        }
    };
    let shapes: [(usize, usize, Vec<usize>); 2] = if small {
        [(2, 19, vec![32, 64]), (1, 14, vec![16, 16, 16])]
    } else {
        [(8, 19, vec![128, 256]), (2, 14, vec![64, 64, 64])]
    };
    let (gpu, kernels) = open_gpu(tuning)?;
    let adapter = gpu.adapter.get_info();
    if by_pass {
        check_pass_timing(&gpu, "bench")?;
    }
    let ts = Timestamps::new(&gpu);
    let timing = if ts.is_some() {
        "timestamp queries"
    } else {
        "wall clock"
    };
    // The roofline: a copy of as many f32 as the largest logits tensor.
    let roof_len = shapes
        .iter()
        .map(|(n, c, s)| n * c * s.iter().product::<usize>())
        .max()
        .unwrap_or(1);
    let roof = kernels.roofline_plan(roof_len)?;
    let roof_ms = time_gpu(&gpu, &ts, repeat, |enc| {
        roof.record(enc);
        Ok(())
    })?
    .best();
    let roof_gbs = roof.bytes() as f64 / (roof_ms * 1e6);
    if !json {
        print_out(&format!(
            "segloss bench on {} ({:?}, {:?}), shaders {}; GPU times: {timing}, median of {repeat}\n\
             roofline (copy of {roof_len} f32): {roof_ms:.3} ms, {roof_gbs:.2} GB/s\n\n\
             {:<24} {:<18} {:>10} {:>10} {:>10} {:>8} {:>8}\n",
            adapter.name,
            adapter.device_type,
            adapter.backend,
            shaders_id(),
            "loss",
            "shape",
            "gpu ms",
            "cpu ms",
            "MB moved",
            "GB/s",
            "of roof"
        ))?;
    }
    let mut rng = Rng(7);
    let mut unplanned = 0;
    for name in &names {
        for (n, c, spatial) in &shapes {
            let c = bench_channels(name, *c);
            let shape = Shape::new(*n, c, spatial)?;
            let loss = Loss::from_name(name, &bench_params(name, c))?;
            let kind = segloss::TargetKind::Labels;
            let classes = if c == 1 { 2 } else { c };
            let z: Vec<f32> = (0..shape.numel()).map(|_| rng.unit() * 6.0 - 3.0).collect();
            // Spatially coherent labels (stripes) so the distance and skeleton losses see regions.
            let w = *spatial.last().unwrap_or(&1);
            let labels: Vec<i32> = (0..shape.pixels())
                .map(|i| (((i % shape.s()) % w / 7 + (i % shape.s()) / w / 5) % classes) as i32)
                .collect();
            let dims: Vec<String> = shape.dims().iter().map(|d| d.to_string()).collect();
            // A size the adapter cannot hold (a storage binding over its limit) is reported
            // in its row and the other cases still run; the exit status says some did not.
            let plan = match kernels.plan(&loss, shape.clone(), kind) {
                Ok(plan) => plan,
                Err(e) => {
                    unplanned += 1;
                    if json {
                        let row =
                            json!({"loss": name, "shape": shape.dims(), "error": e.to_string()});
                        print_out(&format!("{row}\n"))?;
                    } else {
                        print_out(&format!("{name:<24} {:<18} not run: {e}\n", dims.join("x")))?;
                    }
                    continue;
                }
            };
            let zb = upload(&gpu.device, "logits", bytemuck::cast_slice(&z));
            let yb = upload(&gpu.device, "targets", bytemuck::cast_slice(&labels));
            let lb = zeros(&gpu.device, "loss", plan.loss_len());
            let gb = zeros(&gpu.device, "grad", shape.numel());
            let inputs = Inputs {
                logits: &zb,
                targets: &yb,
            };
            let outputs = Outputs::new(&lb, &gb);
            let gpu_ms = time_gpu(&gpu, &ts, repeat, |enc| {
                plan.record(enc, &inputs, &outputs)?;
                Ok(())
            })?
            .best();
            read_status(&gpu.device, &gpu.queue, &plan)?.check()?;
            let pass_times = if by_pass {
                time_passes(&gpu, &kernels, repeat, |enc| {
                    plan.record(enc, &inputs, &outputs)?;
                    Ok(())
                })?
            } else {
                Vec::new()
            };
            let cpu_ms = Timing::cpu(with_cpu.then_some(cpu_repeat), || {
                let targets = segloss::Targets::Labels(&labels);
                let o = segloss::cpu::forward_backward(&loss, &shape, &z, targets);
                std::hint::black_box(o).ok();
            })
            .ms;
            let passes = logit_passes(name);
            let bytes = passes * (shape.numel() as u64 * 4 + shape.pixels() as u64 * 4)
                + shape.numel() as u64 * 4;
            let gbs = bytes as f64 / (gpu_ms * 1e6);
            if json {
                let mut obj = Map::new();
                obj.insert("loss".into(), json!(name));
                obj.insert("shape".into(), json!(shape.dims()));
                obj.insert("gpu_ms".into(), num64(gpu_ms));
                obj.insert("cpu_ms".into(), cpu_ms.map_or(Value::Null, num64));
                obj.insert("bytes".into(), json!(bytes));
                obj.insert("gbs".into(), num64(gbs));
                obj.insert("roofline_gbs".into(), num64(roof_gbs));
                obj.insert("fraction".into(), num64(gbs / roof_gbs));
                obj.insert("timing".into(), json!(timing));
                obj.insert("adapter".into(), json!(adapter.name));
                obj.insert("shaders".into(), json!(shaders_id()));
                if by_pass {
                    obj.insert("passes".into(), passes_json(&pass_times));
                }
                print_out(&format!("{}\n", Value::Object(obj)))?;
            } else {
                print_out(&format!(
                    "{:<24} {:<18} {:>10.3} {:>10} {:>10.1} {:>8.2} {:>7.0}%\n",
                    name,
                    dims.join("x"),
                    gpu_ms,
                    cpu_ms.map_or("-".to_string(), |m| format!("{m:.1}")),
                    bytes as f64 / 1e6,
                    gbs,
                    100.0 * gbs / roof_gbs
                ))?;
                for p in &pass_times {
                    print_out(&format!(
                        "    {:<42} x{:<5} {:>10.3}\n",
                        p.label, p.count, p.ms
                    ))?;
                }
            }
        }
    }
    if unplanned > 0 {
        return failed(format!(
            "bench: {unplanned} case(s) did not fit this adapter's limits (see their rows)"
        ));
    }
    Ok(ExitCode::SUCCESS)
}
