//! `schema.graphql` is the contract clients code against; it must match the code exactly.
//! To update it after an intended change: `RXLEDGER_UPDATE_SCHEMA=1 cargo test -p rxledger-graphql --test schema`.

#[test]
fn committed_schema_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let sdl = rxledger_graphql::sdl();
    if std::env::var_os("RXLEDGER_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &sdl).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == sdl,
        "graphql/schema.graphql is out of date; run RXLEDGER_UPDATE_SCHEMA=1 cargo test -p rxledger-graphql --test schema and commit it"
    );
}
