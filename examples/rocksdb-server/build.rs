//! Builds the C++ shim that puts RocksDB's block cache in a Wave arena (`shim/arena_cache.cc`)
//! against the system's RocksDB headers (librocksdb-dev, installed by scripts/setup.sh).

fn main() {
    println!("cargo:rerun-if-changed=shim/arena_cache.cc");
    println!("cargo:rerun-if-changed=../../memmgr/include/wave_arena.h");
    if !std::path::Path::new("/usr/include/rocksdb/cache.h").exists() {
        panic!("RocksDB headers missing: run ./scripts/setup.sh (installs librocksdb-dev)");
    }
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("shim/arena_cache.cc")
        .include("../../memmgr/include")
        .warnings(true)
        .compile("wave_rocksdb_shim");
}
