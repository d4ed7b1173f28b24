//! The CPU reference: every loss in plain Rust (f64 inside), written to be read side by side with
//! its shader. It is what the GPU kernels are tested against, and the baseline of the benches.

pub mod activation;
pub(crate) mod contour;
pub mod distance;
pub(crate) mod lovasz;
pub(crate) mod pixel;
pub mod reduce;
pub(crate) mod region;
pub(crate) mod skeleton;
pub mod sort;
pub mod terms;
pub(crate) mod topk;

use crate::error::Result;
use crate::loss::{Loss, Spec};
use crate::tensor::{check_host_inputs, Shape, Targets};
use crate::LossOutput;

/// Loss and gradient of `loss` on host data, in f64 internally, returned as f32.
/// Returns [`crate::Error::BadInput`] when a label is out of range or an input is not finite.
pub fn forward_backward(
    loss: &Loss,
    shape: &Shape,
    logits: &[f32],
    targets: Targets,
) -> Result<LossOutput> {
    let z: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
    let (l, g) = forward_backward_f64(loss, shape, &z, targets)?;
    Ok(LossOutput {
        loss: l.iter().map(|&v| v as f32).collect(),
        grad: g.iter().map(|&v| v as f32).collect(),
    })
}

/// The same in f64 end to end (for finite-difference gradient checks).
pub fn forward_backward_f64(
    loss: &Loss,
    shape: &Shape,
    logits: &[f64],
    targets: Targets,
) -> Result<(Vec<f64>, Vec<f64>)> {
    check_host_inputs(shape, logits.len(), &targets)?;
    let (l, g, status) = match loss.spec(shape, targets.kind())? {
        Spec::Pixel(spec) => pixel::forward_backward(&spec, shape, logits, &targets, 1.0),
        Spec::Region(spec) => region::forward_backward(&spec, shape, logits, &targets),
        Spec::Lovasz(spec) => lovasz::forward_backward(&spec, shape, logits, &targets),
        Spec::Topk(spec) => topk::forward_backward(&spec, shape, logits, &targets),
        Spec::Contour(loss) => contour::forward_backward(&loss, shape, logits, &targets),
        Spec::Skeleton(spec) => {
            let (mut l, mut g, st) = skeleton::forward_backward(&spec, shape, logits, &targets);
            if let Some(alpha) = spec.loss.alpha {
                // dice-cldice: (1 - alpha)·Dice + alpha·clDice.
                let dice = Loss::Dice(spec.loss.dice());
                let Spec::Region(ds) = dice.spec(shape, targets.kind())? else {
                    unreachable!("Dice is a region loss")
                };
                let (dl, dg, _) = region::forward_backward(&ds, shape, logits, &targets);
                let w = 1.0 - alpha as f64;
                l[0] += w * dl[0];
                g.iter_mut().zip(&dg).for_each(|(a, b)| *a += w * b);
            }
            (l, g, st)
        }
    };
    status.check()?;
    Ok((l, g))
}
