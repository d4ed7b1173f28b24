//! Reading the committed `.npy` fixtures.

use std::path::{Path, PathBuf};

/// An array read from a `.npy` file: its shape and its values.
pub struct Array<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn open(path: &Path) -> npyz::NpyFile<std::io::BufReader<std::fs::File>> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    npyz::NpyFile::new(std::io::BufReader::new(f))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn read_f32(path: &Path) -> Array<f32> {
    let npy = open(path);
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    Array {
        shape,
        data: npy
            .into_vec::<f32>()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    }
}

/// Reads int64 labels as i32 (fixtures hold small values and ignore indices).
pub fn read_labels(path: &Path) -> Array<i32> {
    let npy = open(path);
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    let data = npy
        .into_vec::<i64>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Array {
        shape,
        data: data
            .into_iter()
            .map(|v| i32::try_from(v).expect("label fits i32"))
            .collect(),
    }
}
