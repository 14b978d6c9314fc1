//! Which node and cluster a data directory belongs to: `meta.properties` at its root, in
//! Kafka's format (`version`, `node.id`, `cluster.id`), written by the first start of a
//! cluster node. Checked before anything else is written, so a node started with the wrong
//! `--node-id`, `--voters` or `--data-dir` stops with an error instead of mixing two
//! clusters' logs.
//!
//! A single node's directory has no such file (its cluster id is in `meta/brook.meta`), so
//! directories written by earlier releases open as they are (the one-node cluster adopts
//! their topics, see `brook_core::broker::LegacyTopic`). A single node's directory cannot
//! become a member of a larger cluster (nor the reverse): that migration is not written
//! yet, and both are refused with a message saying so.

use std::path::Path;

/// The file's name.
pub const META_PROPERTIES: &str = "meta.properties";

/// What the directory holds, by the files that mark it.
fn describe(dir: &Path) -> (Option<(i32, String)>, bool) {
    // A cluster node writes `meta.properties` before anything else; a single node never.
    let single =
        dir.join("meta").join("brook.meta").exists() && !dir.join(META_PROPERTIES).exists();
    let Ok(text) = std::fs::read_to_string(dir.join(META_PROPERTIES)) else {
        return (None, single);
    };
    let mut node = None;
    let mut cluster = None;
    for line in text.lines() {
        match line.split_once('=') {
            Some(("node.id", value)) => node = value.trim().parse::<i32>().ok(),
            Some(("cluster.id", value)) => cluster = Some(value.trim().to_string()),
            _ => {}
        }
    }
    (node.zip(cluster), single)
}

/// Checks that `dir` is this cluster node's (or new) and records it as such.
pub fn claim_for_cluster(dir: &Path, node_id: i32, cluster_id: &str) -> Result<(), String> {
    let shown = dir.display();
    match describe(dir) {
        (Some((node, cluster)), _) => {
            if cluster != cluster_id {
                return Err(format!(
                    "data directory {shown} belongs to cluster {cluster}, not {cluster_id} \
                     (the cluster id comes from --voters: start the node with the voters it \
                     was created with, or use another --data-dir)"
                ));
            }
            if node != node_id {
                return Err(format!(
                    "data directory {shown} belongs to node {node}, not node {node_id}"
                ));
            }
            Ok(())
        }
        (None, true) => Err(format!(
            "data directory {shown} was written by a single broker (no --voters); it cannot \
             be opened as a cluster node (no migration yet): use another --data-dir"
        )),
        (None, false) => {
            let text = format!("version=1\nnode.id={node_id}\ncluster.id={cluster_id}\n");
            let path = dir.join(META_PROPERTIES);
            let temp = dir.join("meta.properties.tmp");
            let write = || -> std::io::Result<()> {
                std::fs::create_dir_all(dir)?;
                let file = std::fs::File::create(&temp)?;
                std::io::Write::write_all(&mut &file, text.as_bytes())?;
                file.sync_all()?;
                std::fs::rename(&temp, &path)?;
                std::fs::File::open(dir)?.sync_all()
            };
            write().map_err(|err| format!("cannot write {}: {err}", path.display()))
        }
    }
}

/// Checks that `dir` is not a cluster node's.
pub fn check_single(dir: &Path) -> Result<(), String> {
    match describe(dir) {
        (Some((node, cluster)), _) => Err(format!(
            "data directory {} belongs to node {node} of cluster {cluster}: start it with its \
             --node-id and --voters",
            dir.display()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_refuses_another_node_or_cluster_and_single_broker_dirs() {
        let root = std::env::temp_dir().join(format!("brook-identity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("node");
        claim_for_cluster(&dir, 2, "abc").unwrap();
        claim_for_cluster(&dir, 2, "abc").unwrap();
        let err = claim_for_cluster(&dir, 3, "abc").unwrap_err();
        assert!(err.contains("belongs to node 2, not node 3"), "{err}");
        let err = claim_for_cluster(&dir, 2, "xyz").unwrap_err();
        assert!(err.contains("belongs to cluster abc, not xyz"), "{err}");
        let err = check_single(&dir).unwrap_err();
        assert!(
            err.contains("start it with its --node-id and --voters"),
            "{err}"
        );

        let single = root.join("single");
        std::fs::create_dir_all(single.join("meta")).unwrap();
        std::fs::write(single.join("meta").join("brook.meta"), "x").unwrap();
        check_single(&single).unwrap();
        let err = claim_for_cluster(&single, 1, "abc").unwrap_err();
        assert!(err.contains("written by a single broker"), "{err}");
        assert!(!single.join(META_PROPERTIES).exists(), "nothing written");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
