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

/// The limits `Kernels::new` checks are what the shaders use, measured with naga: the most
/// storage buffers a family binds (one more for the region family's vec4 view of the logits) and
/// the most workgroup memory an entry point uses.
#[test]
fn the_checked_limits_are_what_the_shaders_use() {
    let mut most_storage = 0;
    let mut most_workgroup = 0;
    for caps in Caps::ALL {
        for family in Family::ALL {
            let storage = shader::storage_buffers(family, caps).unwrap();
            let workgroup = shader::workgroup_storage(family, caps).unwrap();
            let extra = u32::from(caps.logits_vec4 && family == Family::Region);
            assert!(
                storage <= segloss::MIN_STORAGE_BUFFERS + extra,
                "{family:?} {caps:?}: {storage} storage buffers"
            );
            assert!(
                workgroup <= segloss::MIN_WORKGROUP_STORAGE,
                "{family:?} {caps:?}: {workgroup} bytes of workgroup memory"
            );
            if !caps.logits_vec4 {
                most_storage = most_storage.max(storage);
            }
            most_workgroup = most_workgroup.max(workgroup);
        }
    }
    assert_eq!(most_storage, segloss::MIN_STORAGE_BUFFERS);
    assert_eq!(most_workgroup, segloss::MIN_WORKGROUP_STORAGE);
    let vec4 = Caps {
        subgroups: false,
        logits_vec4: true,
    };
    assert_eq!(
        shader::storage_buffers(Family::Region, vec4).unwrap(),
        Caps::LOGITS_VEC4_STORAGE_BUFFERS
    );
}
