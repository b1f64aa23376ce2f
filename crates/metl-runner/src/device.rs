//! Parsing and checking `--device`.

use crate::error::bad_input;
use tch::{Cuda, Device};

/// Parses `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available, else CPU), checking
/// that the device exists.
pub fn parse_device(spec: &str) -> anyhow::Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    let cuda_count = || if Cuda::is_available() { Cuda::device_count() as usize } else { 0 };
    match spec.as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::cuda_if_available()),
        "cuda" | "gpu" => {
            if cuda_count() == 0 {
                Err(bad_input(
                    "--device cuda: no CUDA device is available (libtorch found no GPU); use --device cpu",
                ))
            } else {
                Ok(Device::Cuda(0))
            }
        }
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => {
                let count = cuda_count();
                if n < count {
                    Ok(Device::Cuda(n))
                } else {
                    Err(bad_input(format!("--device {other}: only {count} CUDA device(s) available")))
                }
            }
            _ => Err(bad_input(format!("--device {other}: expected cpu, cuda, cuda:N or auto"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(parse_device("CPU").unwrap(), Device::Cpu);
        assert!(parse_device("auto").is_ok());
        let err = parse_device("cuda:x").unwrap_err().to_string();
        assert!(err.contains("expected cpu, cuda"), "{err}");
        if !Cuda::is_available() {
            let err = parse_device("cuda").unwrap_err();
            assert_eq!(crate::error::exit_status(&err), 2);
        }
    }
}
