//! Compiles `proto/riposte.proto` with protox (pure Rust), so the build needs no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["riposte.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto/riposte.proto");
    Ok(())
}
