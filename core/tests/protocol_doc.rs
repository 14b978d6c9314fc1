//! `docs/protocol.md` lists exactly the APIs and versions the broker advertises.

use brook_core::protocol::SUPPORTED_APIS;

#[test]
fn protocol_doc_table_matches_the_advertised_versions() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("docs/protocol.md exists");
    let mut documented = Vec::new();
    for line in doc
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| API"))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Ok(key), Some((min, max))) = (cells[2].parse::<i16>(), cells[3].split_once('–'))
        else {
            continue;
        };
        documented.push((
            key,
            min.parse::<i16>().unwrap(),
            max.parse::<i16>().unwrap(),
        ));
    }
    let mut served: Vec<(i16, i16, i16)> = SUPPORTED_APIS
        .iter()
        .map(|&(key, min, max)| (key as i16, min, max))
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(
        documented, served,
        "docs/protocol.md and SUPPORTED_APIS disagree"
    );
}
