//! Link options for the shipped binaries (nothing is generated).
//!
//! On glibc, pack the binary's relative relocations (`DT_RELR`): a position-independent
//! executable carries one 24-byte entry per pointer to relocate (420 KiB of `.rela.dyn` for
//! api-monitor), which the dynamic loader reads at every start and so stays resident; packed,
//! they take a few KiB (`docs/performance.md`, "Memory"). It needs glibc 2.36 (Debian 12) at
//! run time and binutils 2.38 to link; `API_MONITOR_NO_RELR=1` at build time turns it off. Not
//! on musl (the image's musl 1.2.3 cannot apply them) nor in a static glibc build.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=API_MONITOR_NO_RELR");
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    // Not for a static glibc build (`make static`'s fallback): it has no loader to read them.
    let dynamic = !features.split(',').any(|f| f == "crt-static");
    // An escape hatch for older toolchains or loaders.
    let wanted = std::env::var_os("API_MONITOR_NO_RELR").is_none();
    if wanted && dynamic && target_os == "linux" && target_env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
