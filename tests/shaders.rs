//! Every shader parses and validates with naga, for every combination of the device
//! capabilities that change the source (subgroups, the vec4 view of the logits), with no adapter.

use segloss::shader::{self, Caps, Family};

#[test]
fn every_family_validates_for_every_caps() {
    for family in Family::ALL {
        for caps in Caps::ALL {
            if let Err(e) = shader::validate(family, caps) {
                panic!("{caps:?}: {e}");
            }
        }
    }
}
