//! Reading what a report refers to: local paths, or http(s) URLs fetched with a timeout and a size
//! limit. Relative references resolve against the report's own location.

use std::path::{Path, PathBuf};
use std::time::Duration;

use analog_core::steering::PairFormat;
use anyhow::{Context, Result, bail};

/// Largest file fetched for a report (pair sets and vector files).
pub const MAX_FETCH_BYTES: u64 = 64 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(60);

/// Where a report came from: relative references are resolved against it.
#[derive(Debug, Clone)]
pub enum Location {
    File(PathBuf),
    Url(String),
}

impl Location {
    pub fn parse(spec: &str) -> Self {
        if is_remote(spec) { Self::Url(spec.to_string()) } else { Self::File(PathBuf::from(spec)) }
    }

    /// The location of `reference` as seen from this one.
    pub fn join(&self, reference: &str) -> Location {
        if is_remote(reference) {
            return Location::Url(reference.to_string());
        }
        match self {
            Location::File(path) => Location::File(path.parent().unwrap_or(Path::new(".")).join(reference)),
            Location::Url(url) => Location::Url(join_url(url, reference)),
        }
    }

    pub fn read(&self, limit: u64) -> Result<Vec<u8>> {
        match self {
            Location::File(path) => {
                let size = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
                if size > limit {
                    bail!("{} is {size} bytes; at most {limit} are accepted", path.display());
                }
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
            }
            Location::Url(url) => fetch(url, limit),
        }
    }

    /// The pair-file format its name says.
    pub fn pair_format(&self) -> PairFormat {
        PairFormat::from_name(&self.to_string())
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::Url(u) => f.write_str(u),
        }
    }
}

fn is_remote(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// RFC 3986-style resolution of a relative path against a base URL (enough for `a/b`, `../c`, `/d`).
fn join_url(base: &str, reference: &str) -> String {
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let origin = &base[..path_start];
    let base_path = base[path_start..].split(['?', '#']).next().unwrap_or_default();
    let mut segments: Vec<&str> = if reference.starts_with('/') {
        Vec::new()
    } else {
        let dir = base_path.rsplit_once('/').map_or("", |(d, _)| d);
        dir.split('/').filter(|s| !s.is_empty()).collect()
    };
    for part in reference.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    format!("{origin}/{}", segments.join("/"))
}

/// GET with a timeout and a size limit.
pub fn fetch(url: &str, limit: u64) -> Result<Vec<u8>> {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(TIMEOUT)).build().into();
    let mut response = agent.get(url).call().with_context(|| format!("cannot fetch {url}"))?;
    response.body_mut().with_config().limit(limit).read_to_vec().with_context(|| format!("cannot read {url} (at most {limit} bytes are accepted)"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn relative_references_resolve_against_the_report() {
        let base = Location::parse("https://lab.example/reports/r1.json");
        assert_eq!(base.join("../datasets/s.jsonl").to_string(), "https://lab.example/datasets/s.jsonl");
        assert_eq!(base.join("v/vec.json").to_string(), "https://lab.example/reports/v/vec.json");
        assert_eq!(base.join("/x.csv").to_string(), "https://lab.example/x.csv");
        assert_eq!(base.join("/x.csv").pair_format(), PairFormat::Csv);
        let file = Location::parse("public/reports/r.json");
        assert_eq!(file.join("../datasets/s.jsonl").to_string(), "public/reports/../datasets/s.jsonl");
    }
}
