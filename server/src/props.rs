//! The shared budget of the property tests (proptest) that fuzz every parser of client input: a
//! fixed number of cases from a fixed seed, so a CI run takes seconds and a failure reproduces.
//! `PROPTEST_CASES` and `PROPTEST_RNG_SEED` still override both for a longer local run.

use proptest::test_runner::{Config, RngSeed};

/// Seed used unless `PROPTEST_RNG_SEED` names another.
const SEED: u64 = 0x646f_736b_615f_6675;

/// `cases` cases (unless `PROPTEST_CASES` is set), a fixed seed, no regression files: failing
/// cases found once are kept as named regression tests instead.
pub fn budget(cases: u32) -> Config {
    let env = Config::default();
    Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            env.cases
        } else {
            cases
        },
        rng_seed: match env.rng_seed {
            RngSeed::Random => RngSeed::Fixed(SEED),
            fixed => fixed,
        },
        failure_persistence: None,
        ..env
    }
}
