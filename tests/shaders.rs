//! Every shader parses and validates with naga, with and without subgroups, with no adapter.

use segloss::shader::{self, Family};

#[test]
fn every_family_validates_with_and_without_subgroups() {
    for family in Family::ALL {
        for subgroups in [false, true] {
            if let Err(e) = shader::validate(family, subgroups) {
                panic!("subgroups={subgroups}: {e}");
            }
        }
    }
}
