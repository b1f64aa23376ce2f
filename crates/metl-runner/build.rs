//! Embeds libtorch's library folder as rpath in this package's binaries, and the git
//! revision for `run.json` (see metl-build).

fn main() {
    metl_build::link_libtorch();
    metl_build::emit_git_revision();
}
