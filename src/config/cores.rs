//! Which CPUs to serve on: the user's specification (`"all"`, `"0-3,6"`, `[0, 2]`,
//! `--workers N`) resolved against the process's affinity mask, and the taskset-style
//! formatting of core lists used in messages.

use serde::Deserialize;

use super::ConfigError;

/// Which cores to run on, as written by the user.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoreSpec {
    /// Every core in the process's affinity mask.
    All,
    /// These cores, in this order.
    List(Vec<usize>),
    /// The first N usable cores (`--workers N`).
    First(usize),
}

impl CoreSpec {
    /// Parses `"all"` or a taskset-style list such as `"0-3,6"`.
    pub fn parse(text: &str) -> Result<CoreSpec, ConfigError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("all") {
            return Ok(CoreSpec::All);
        }
        let invalid = || {
            ConfigError(format!(
                "invalid core list {text:?}: expected \"all\", \"0-3,6\" or a list like [0, 2]"
            ))
        };
        let mut cores = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim(), hi.trim()),
                None => (part, part),
            };
            let lo: usize = lo.parse().map_err(|_| invalid())?;
            let hi: usize = hi.parse().map_err(|_| invalid())?;
            if lo > hi || hi >= 4096 {
                return Err(invalid());
            }
            cores.extend(lo..=hi);
        }
        Ok(CoreSpec::List(cores))
    }

    /// Resolves the specification against the cores this process may run on.
    pub fn resolve(&self, usable: &[usize]) -> Result<Vec<usize>, ConfigError> {
        if usable.is_empty() {
            return Err(ConfigError(
                "no usable cores: the process affinity mask is empty".into(),
            ));
        }
        let chosen = match self {
            CoreSpec::All => usable.to_vec(),
            CoreSpec::First(n) => {
                if *n == 0 || *n > usable.len() {
                    return Err(ConfigError(format!(
                        "--workers {n} is not possible: {} usable cores ({})",
                        usable.len(),
                        format_cores(usable)
                    )));
                }
                usable[..*n].to_vec()
            }
            CoreSpec::List(list) => {
                if list.is_empty() {
                    return Err(ConfigError("server.cores is empty".into()));
                }
                let mut seen = Vec::with_capacity(list.len());
                for &core in list {
                    if !usable.contains(&core) {
                        return Err(ConfigError(format!(
                            "core {core} is not available; usable cores: {}",
                            format_cores(usable)
                        )));
                    }
                    if seen.contains(&core) {
                        return Err(ConfigError(format!("core {core} is listed twice")));
                    }
                    seen.push(core);
                }
                seen
            }
        };
        Ok(chosen)
    }
}

impl<'de> Deserialize<'de> for CoreSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            List(Vec<usize>),
        }
        let raw = Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "expected \"all\", a string like \"0-3,6\" or a list like [0, 2]",
            )
        })?;
        match raw {
            Raw::Text(text) => CoreSpec::parse(&text).map_err(serde::de::Error::custom),
            Raw::List(list) => Ok(CoreSpec::List(list)),
        }
    }
}

/// The cores this process may run on, ascending.
pub fn usable_cores() -> Vec<usize> {
    let mut cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|id| id.id)
        .collect();
    cores.sort_unstable();
    cores
}

/// Formats cores taskset-style: `[0, 1, 2, 5]` → `"0-2,5"`.
pub fn format_cores(cores: &[usize]) -> String {
    let mut sorted = cores.to_vec();
    sorted.sort_unstable();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_spec_parses_ranges_and_lists() {
        assert_eq!(CoreSpec::parse("all").unwrap(), CoreSpec::All);
        assert_eq!(
            CoreSpec::parse("0-3,6").unwrap(),
            CoreSpec::List(vec![0, 1, 2, 3, 6])
        );
        assert!(CoreSpec::parse("3-1").is_err());
        assert!(CoreSpec::parse("a").is_err());
        assert!(CoreSpec::parse("").is_err());
    }

    #[test]
    fn unavailable_core_is_named_with_the_usable_ones() {
        let err = CoreSpec::List(vec![7]).resolve(&[0, 1]).unwrap_err();
        assert_eq!(err.0, "core 7 is not available; usable cores: 0-1");
    }

    #[test]
    fn format_cores_compacts_runs() {
        assert_eq!(format_cores(&[5, 0, 1, 2]), "0-2,5");
        assert_eq!(format_cores(&[3]), "3");
    }
}
