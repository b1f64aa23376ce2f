//! Embeds libtorch's library folder as rpath, as every metl package linking a binary does.

fn main() {
    metl_build::link_libtorch();
}
