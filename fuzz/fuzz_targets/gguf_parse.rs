//! libFuzzer target: any bytes must parse to a file or to `Error::Gguf`, never panic.
#![no_main]

use kquants::gguf::{GgufFile, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match GgufFile::from_vec(data.to_vec()) {
        Ok(f) => {
            for (_, v) in f.metadata().iter() {
                if let Value::Array(a) = v {
                    assert_eq!(a.iter().count(), a.len());
                }
            }
            for t in f.tensors() {
                assert_eq!(f.tensor_data(t).len(), t.nbytes);
            }
        }
        Err(kquants::Error::Gguf { .. }) => {}
        Err(e) => panic!("unexpected error kind: {e}"),
    }
});
