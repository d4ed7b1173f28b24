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

/// The build carries every WGSL file under `shaders/` (a file left out of `shader::sources` would
/// make `#include` panic, and the digest miss it), and `differs_from_dir` tells the checkout's
/// own files from an edited copy, a missing file and no folder at all.
#[test]
fn the_shader_digest_is_of_the_checkout_and_sees_an_edit() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut on_disk = Vec::new();
    for sub in ["", "common"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".wgsl") {
                on_disk.push(if sub.is_empty() {
                    name
                } else {
                    format!("{sub}/{name}")
                });
            }
        }
    }
    let mut carried: Vec<String> = shader::sources().map(|(p, _)| p.to_string()).collect();
    on_disk.sort();
    carried.sort();
    assert_eq!(on_disk, carried);
    assert_eq!(shader::differs_from_dir(&dir), Some(false));

    // A copy of the folder with one character added to one file, then with that file gone.
    let copy = std::env::temp_dir().join(format!("segloss-shader-digest-{}", std::process::id()));
    std::fs::create_dir_all(copy.join("common")).unwrap();
    for (path, text) in shader::sources() {
        std::fs::write(copy.join(path), text).unwrap();
    }
    assert_eq!(shader::differs_from_dir(&copy), Some(false));
    std::fs::write(
        copy.join("distance.wgsl"),
        format!(
            "{} ",
            shader::sources()
                .find(|(p, _)| *p == "distance.wgsl")
                .unwrap()
                .1
        ),
    )
    .unwrap();
    assert_eq!(shader::differs_from_dir(&copy), Some(true));
    std::fs::remove_file(copy.join("distance.wgsl")).unwrap();
    assert_eq!(shader::differs_from_dir(&copy), Some(true));
    std::fs::remove_dir_all(&copy).unwrap();
    assert_eq!(shader::differs_from_dir(&copy), None);
}
