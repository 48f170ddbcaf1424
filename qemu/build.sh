#!/bin/sh
# Builds what `sviommu boot` runs, all cached under ${SVIOMMU_CACHE:-~/.cache/sviommu}:
#   - bookworm's QEMU 7.2 (apt-get source) with qemu/sviommu-qemu-7.2.patch applied, only
#     x86_64-softmmu, linked with this clone's libsviommu_ffi.a; source and build folder keyed by
#     the patch's hash, objects shared through ccache, so a changed shim rebuilds incrementally;
#   - Debian's kernels (linux-image-amd64 and -arm64: vmlinuz and the virtio modules) and
#     busybox-static,
#     and an initramfs whose init (qemu/guest-init.sh) exercises a virtio-blk disk.
# A second run reuses everything; a changed model only relinks QEMU.
#
#   qemu/build.sh           build what is missing, then print the artefacts as key=value lines
#   qemu/build.sh --check   print them and exit 0 if everything is built, else exit 3 (builds
#                           nothing but the Rust library and QEMU's relink against it)
#
# Needs root for apt-get (the minimal build dependencies, not `apt-get build-dep`).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cache=${SVIOMMU_CACHE:-$HOME/.cache/sviommu}
patch="$here/sviommu-qemu-7.2.patch"
# The Debian revision the patch was made against; later point releases must still apply it.
made_for="1:7.2+dfsg-7+deb12u18"
key=$(cat "$patch" | sha256sum | cut -c1-16)
top="$cache/qemu-$key"
src="$top/src"
build="$top/build"
qemu="$build/qemu-system-x86_64"
qemu_arm="$build/qemu-system-aarch64"
targets="x86_64-softmmu,aarch64-softmmu"
check=0
[ "${1:-}" = "--check" ] && check=1

say() { echo "build.sh: $*" >&2; }

need_pkgs() {
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    [ "$check" = 1 ] && { say "missing packages:$missing"; exit 3; }
    say "installing$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >&2
}

# --- dependencies ---------------------------------------------------------------------------
need_pkgs build-essential ninja-build meson libglib2.0-dev libpixman-1-dev libfdt-dev ccache \
    seabios qemu-system-data ipxe-qemu busybox-static dpkg-dev cpio

# --- QEMU source, patched -------------------------------------------------------------------
if [ ! -f "$src/.sviommu-patched" ]; then
    [ "$check" = 1 ] && { say "no patched QEMU source for patch $key"; exit 3; }
    pristine="$cache/qemu-source"
    if ! ls -d "$pristine"/qemu-7.2* >/dev/null 2>&1; then
        if ! grep -rqs "deb-src\|Types:.*deb-src" /etc/apt/sources.list /etc/apt/sources.list.d/; then
            say "adding a deb-src entry for bookworm"
            printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                >/etc/apt/sources.list.d/sviommu-deb-src.sources
            apt-get update -q >&2
        fi
        mkdir -p "$pristine"
        (cd "$pristine" && apt-get source -q qemu >&2)
    fi
    dir=$(ls -d "$pristine"/qemu-7.2*/ | head -n1)
    version=$(cd "$dir" && dpkg-parsechangelog -S Version)
    rm -rf "$src"
    mkdir -p "$top"
    cp -a "$dir" "$src"
    if ! (cd "$src" && patch -p1 --dry-run -s <"$patch" >/dev/null); then
        say "the patch does not apply to Debian's qemu $version (it was made against $made_for):"
        say "refresh qemu/sviommu-qemu-7.2.patch against this revision"
        rm -rf "$src"
        exit 1
    fi
    (cd "$src" && patch -p1 -s <"$patch")
    touch "$src/.sviommu-patched"
fi

# --- the model, as a static library linked into QEMU -----------------------------------------
# A target folder of its own: a `cargo test` that runs this script holds the clone's.
CARGO_TARGET_DIR="$cache/cargo-target" cargo build -q --release -p sviommu-ffi \
    --manifest-path "$repo/Cargo.toml" >&2
lib="$cache/cargo-target/release/libsviommu_ffi.a"
mkdir -p "$src/hw/i386/sviommu"
if ! cmp -s "$lib" "$src/hw/i386/sviommu/libsviommu_ffi.a"; then
    cp "$lib" "$src/hw/i386/sviommu/libsviommu_ffi.a"
    rm -f "$qemu" "$qemu_arm" # ninja does not see the library: relink
fi
cmp -s "$repo/crates/ffi/include/sviommu.h" "$src/hw/i386/sviommu/sviommu.h" ||
    cp "$repo/crates/ffi/include/sviommu.h" "$src/hw/i386/sviommu/sviommu.h"

# --- QEMU, x86_64-softmmu and aarch64-softmmu only ------------------------------------------
# Each patch gets its own source and build folders: ccache shares objects between them only if
# their paths leave the hash (paths under the cache are rewritten relative, and the working
# folder, which -g would otherwise hash, is left out).
export CCACHE_DIR="$cache/ccache" CCACHE_BASEDIR="$cache" CCACHE_NOHASHDIR=1
# A build folder configured for other targets (an older build.sh) is configured afresh.
if [ ! -f "$build/build.ninja" ] || [ "$(cat "$build/.sviommu-targets" 2>/dev/null)" != "$targets" ]; then
    [ "$check" = 1 ] && { say "QEMU for patch $key is not configured for $targets"; exit 3; }
    rm -rf "$build"
    mkdir -p "$build"
    cc="cc"
    command -v ccache >/dev/null && cc="ccache cc"
    (cd "$build" && "$src/configure" --cc="$cc" \
        --target-list="$targets" --disable-docs --disable-tools --disable-user \
        --disable-werror --without-default-features --enable-tcg --enable-fdt=system >&2)
    echo "$targets" >"$build/.sviommu-targets"
fi
(cd "$build" && ninja qemu-system-x86_64 qemu-system-aarch64 >&2)

# --- the guests: Debian's kernels, their virtio modules, busybox -----------------------------
# arm64's packages come through a private apt state under the cache (its own sources list and
# package lists), so the host's dpkg gains no foreign architecture.
apt_arm64() {
    a="$cache/apt-arm64"
    cmd=$1
    shift
    set -- -o Dir::State="$a/state" -o Dir::State::status="$a/state/status" \
        -o Dir::Cache="$a/cache" -o Dir::Etc::SourceList="$a/sources.list" \
        -o Dir::Etc::SourceParts=/nonexistent -o APT::Architecture=arm64 \
        -o APT::Architectures=arm64 -o APT::Sandbox::User=root "$@"
    # The package lists are refreshed daily (the security archive drops superseded kernels).
    if [ -z "$(find "$a/updated" -mtime -1 2>/dev/null)" ]; then
        mkdir -p "$a/state/lists/partial" "$a/cache/archives/partial"
        : >"$a/state/status"
        k=/usr/share/keyrings/debian-archive-keyring.gpg
        for suite in "debian bookworm" "debian-security bookworm-security"; do
            printf 'deb [arch=arm64 signed-by=%s] http://deb.debian.org/%s main\n' "$k" "$suite"
        done >"$a/sources.list"
        apt-get -q -o Dir::State="$a/state" -o Dir::State::status="$a/state/status" \
            -o Dir::Cache="$a/cache" -o Dir::Etc::SourceList="$a/sources.list" \
            -o Dir::Etc::SourceParts=/nonexistent -o APT::Architecture=arm64 \
            -o APT::Architectures=arm64 -o APT::Sandbox::User=root update >&2
        touch "$a/updated"
    fi
    "$cmd" "$@"
}

# guest ARCH: the kernel package's folder ($kdir) and the initramfs ($initrd) for ARCH
# (amd64 or arm64), fetched and built if missing.
guest() {
    arch=$1
    if [ "$arch" = amd64 ]; then
        run="" bb_key=$(sha256sum /bin/busybox)
        # virtio_blk and virtio_pci with their dependencies, in modules.dep's order (deepest first).
        modlist="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk"
    else
        run=apt_arm64 bb_key=arm64
        # arm64's kernel has virtio and virtio_ring built in.
        modlist="virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk"
    fi
    kpkg=$($run apt-cache depends "linux-image-$arch" | sed -n 's/.*Depends: \(linux-image-[0-9].*\)/\1/p' | head -n1)
    [ -n "$kpkg" ] || { say "cannot resolve linux-image-$arch's kernel package"; exit 1; }
    kdir="$cache/kernel/$kpkg"
    if [ ! -f "$kdir/vmlinuz" ]; then
        [ "$check" = 1 ] && { say "no kernel $kpkg"; exit 3; }
        rm -rf "$kdir.tmp" && mkdir -p "$kdir.tmp"
        (cd "$kdir.tmp" && $run apt-get download -q "$kpkg" >&2 && dpkg-deb -x ./*.deb root)
        cp "$kdir.tmp"/root/boot/vmlinuz-* "$kdir.tmp/vmlinuz"
        rm -f "$kdir.tmp"/*.deb
        rm -rf "$kdir" && mv "$kdir.tmp" "$kdir"
    fi
    bb="/bin/busybox"
    if [ "$arch" = arm64 ]; then
        bb="$cache/busybox-arm64/bin/busybox"
        if [ ! -f "$bb" ]; then
            [ "$check" = 1 ] && { say "no arm64 busybox"; exit 3; }
            rm -rf "$cache/busybox-arm64.tmp" && mkdir -p "$cache/busybox-arm64.tmp"
            (cd "$cache/busybox-arm64.tmp" && apt_arm64 apt-get download -q busybox-static >&2 &&
                dpkg-deb -x ./*.deb . && rm -f ./*.deb)
            rm -rf "$cache/busybox-arm64" && mv "$cache/busybox-arm64.tmp" "$cache/busybox-arm64"
        fi
        bb_key="arm64 $(sha256sum "$bb")"
    fi
    initkey=$( (cat "$here/guest-init.sh"; echo "$kpkg $modlist"; echo "$bb_key") | sha256sum | cut -c1-16)
    initrd="$cache/initrd-$initkey.cpio.gz"
    if [ ! -f "$initrd" ]; then
        [ "$check" = 1 ] && { say "no initramfs $initkey"; exit 3; }
        mods=$(ls -d "$kdir"/root/lib/modules/*/)
        stage="$cache/initrd-$initkey.d"
        rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/mod" "$stage/proc" "$stage/sys" "$stage/dev" "$stage/tmp"
        cp "$bb" "$stage/bin/busybox"
        cp "$here/guest-init.sh" "$stage/init" && chmod 755 "$stage/init"
        : >"$stage/mod/order"
        for m in $modlist; do
            f=$(cd "$mods" && find kernel -name "$m.ko" | head -n1)
            [ -n "$f" ] || { say "module $m not in $kpkg"; exit 1; }
            cp "$mods/$f" "$stage/mod/$m.ko"
            echo "$m.ko" >>"$stage/mod/order"
        done
        (cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) >"$initrd.tmp"
        mv "$initrd.tmp" "$initrd"
        rm -rf "$stage"
    fi
}

guest amd64
echo "qemu=$qemu"
echo "kernel=$kdir/vmlinuz"
echo "initrd=$initrd"
echo "firmware=/usr/share/seabios:/usr/share/qemu:/usr/lib/ipxe/qemu"
guest arm64
echo "qemu_arm=$qemu_arm"
echo "kernel_arm=$kdir/vmlinuz"
echo "initrd_arm=$initrd"
echo "patch=$key"
