//! Build script: compiles the production ruleset (see README "Rules at build time").
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
