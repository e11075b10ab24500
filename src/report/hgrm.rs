//! HdrHistogram's percentile-distribution files (`core-N.hgrm`, `all.hgrm`, and
//! `upstream.hgrm` for the upstream servers' latencies when there were any), values in
//! milliseconds, which HdrHistogram's plotters read.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use hdrhistogram::Histogram;

use super::RunSummary;

/// Writes `core-N.hgrm` for each core and `all.hgrm` merged.
pub(crate) fn write_hgrm_files(dir: &Path, summary: &RunSummary) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for core in &summary.cores {
        let mut file = BufWriter::new(File::create(dir.join(format!("core-{}.hgrm", core.core)))?);
        write_percentile_distribution(&mut file, &core.latency)?;
        file.flush()?;
    }
    let mut file = BufWriter::new(File::create(dir.join("all.hgrm"))?);
    write_percentile_distribution(&mut file, &summary.merged_latency())?;
    file.flush()?;
    let upstream = dir.join("upstream.hgrm");
    match summary.merged_upstream_latency() {
        Some(h) => {
            let mut file = BufWriter::new(File::create(upstream)?);
            write_percentile_distribution(&mut file, &h)?;
            file.flush()
        }
        // A report directory used again: no stale upstream curve from an earlier run.
        None => match std::fs::remove_file(upstream) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// HdrHistogram's percentile distribution text (what `outputPercentileDistribution` prints and
/// HdrHistogram's plotters read), values in milliseconds.
pub fn write_percentile_distribution(out: &mut impl Write, h: &Histogram<u64>) -> io::Result<()> {
    const SCALE: f64 = 1000.0;
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    if !h.is_empty() {
        let mut total = 0;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                writeln!(
                    out,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(out, "{value:12.3} {q:2.12} {total:10}")?;
            }
        }
    }
    writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / SCALE,
        h.stdev() / SCALE
    )?;
    writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / SCALE,
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        // 3 significant digits (see `new_histogram`) need 2048 sub-buckets per bucket.
        2048
    )
}
