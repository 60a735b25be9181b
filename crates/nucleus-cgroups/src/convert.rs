//! Unit conversions between OCI/v1 values and v2 files. Pure functions.

use crate::CgroupError;

/// v1 `cpu.shares` (2..=262144) to v2 `cpu.weight` (1..=10000), the
/// linear mapping runc and the OCI docs use; 0 means unset.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// v2 `cpu.weight` (1..=10000) back to v1 `cpu.shares`; 0 means unset.
/// The inverse of [`shares_to_weight`], rounded up so that the round trip
/// from a weight is exact.
pub fn weight_to_shares(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    let weight = weight.clamp(1, 10_000);
    2 + ((weight - 1) * 262_142).div_ceil(9999)
}

/// v1 `blkio.weight` (10..=1000) to v2 `io.weight` (1..=10000); 0 is unset.
pub fn blkio_weight_to_io(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = u64::from(weight.clamp(10, 1000));
    1 + ((w - 10) * 9999) / 990
}

/// OCI `memory.swap` (memory+swap total) to v2 `memory.swap.max` (swap
/// only): -1 is unlimited, 0 is unset.
pub fn swap_to_v2(swap: i64, limit: Option<i64>) -> Result<i64, CgroupError> {
    let limit = limit.unwrap_or(0);
    if limit == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    let bad = |reason: &str| {
        Err(CgroupError::InvalidValue {
            field: "linux.resources.memory.swap",
            value: swap.to_string(),
            reason: reason.to_owned(),
        })
    };
    if limit <= 0 {
        return bad("a swap limit needs a positive memory limit");
    }
    if swap < limit {
        return bad(&format!(
            "memory+swap must be >= the memory limit `{limit}`"
        ));
    }
    Ok(swap - limit)
}

/// A byte limit as v2 writes it: negative is `max`.
pub(crate) fn v2_limit(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_shares_weight_round_trip() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
        for w in [1, 39, 100, 5000, 10_000] {
            assert_eq!(shares_to_weight(weight_to_shares(w)), w, "weight {w}");
        }
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
    }

    #[test]
    fn blkio_weight() {
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(500), 4950);
        assert_eq!(blkio_weight_to_io(1000), 10_000);
    }

    #[test]
    fn swap_conversion() {
        assert_eq!(swap_to_v2(0, Some(-1)).unwrap(), -1);
        assert_eq!(swap_to_v2(-1, Some(100)).unwrap(), -1);
        assert_eq!(swap_to_v2(300, Some(100)).unwrap(), 200);
        let err = swap_to_v2(50, Some(100)).unwrap_err().to_string();
        assert_eq!(err, "invalid value `50` for `linux.resources.memory.swap`: memory+swap must be >= the memory limit `100`");
        assert!(swap_to_v2(50, None).is_err());
        assert_eq!(v2_limit(-1), "max");
    }
}
