//! Fuzz the export-file decoder (protocol/export): CSV (flat, wide, report), XML and ASTM files
//! under the shipped profiles' mappings. The first byte picks the mapping; the rest is the file.
//! Never a panic; a file always yields observations or an error, and every observation has a
//! test code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketgate::config::export::mapping_from_profile;
use pocketgate::protocol::export::{ExportMapping, decode};
use std::sync::OnceLock;

const PROFILES: [&str; 6] = [
    include_str!("../../../config/profiles/pima-csv.toml"),
    include_str!("../../../config/profiles/cobas-cedex-csv.toml"),
    include_str!("../../../config/profiles/genexpert-export.toml"),
    // A wide mac_roman file (BD Multiset), an XML export and an ASTM records file.
    "[export]\nencoding = \"mac_roman\"\ndelimiter = \"\\t\"\nsample_id = \"Sample Name\"\n\
     observed_at = \"Date Analyzed\"\ndate_format = \"%m/%d/%Y\"\n\
     analytes = { CD4 = \"CD3+CD4+ Abs Cnt\", CD8 = \"CD3+CD8+ Abs Cnt\" }\n",
    "[export]\nformat = \"xml\"\nencoding = \"latin1\"\nrecord = \"Sample/Result\"\n\
     sample_id = \"../@id\"\ntest_code = \"@code\"\nvalue = \"Value\"\nobserved_at = \"Time\"\n",
    "[export]\nformat = \"astm\"\n",
];

fn mappings() -> &'static [ExportMapping] {
    static M: OnceLock<Vec<ExportMapping>> = OnceLock::new();
    M.get_or_init(|| {
        PROFILES
            .iter()
            .map(|p| mapping_from_profile(p).expect("fuzz mappings are valid"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let m = &mappings()[usize::from(selector) % PROFILES.len()];
    let d = decode(file, m);
    assert!(!d.observations.is_empty() || !d.errors.is_empty());
    assert!(d.observations.iter().all(|o| !o.test_code.is_empty()));
});
