//! Embeds libtorch's library folder as rpath in this package's binaries (see metl-build).

fn main() {
    metl_build::link_libtorch();
}
