#!/usr/bin/env bash
# Prepares one stock kernel for the VM tier, cached under .cache/vm/<package>_<version>:
# the Debian package, its uncompressed vmlinux (direct PVH boot is twice as fast), a
# modules tree with modules.dep, and an initramfs that mounts the host root over 9p.
# Usage: prepare.sh <package> <version>; prints the cache directory.
set -euo pipefail
pkg=$1 ver=$2
repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=$repo/.cache/vm/${pkg}_${ver}
if [[ -f $dir/ready ]]; then echo "$dir"; exit 0; fi
rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"

# _apt cannot write into a root-owned folder; download as root without the sandbox warning.
if ! apt-get -o APT::Sandbox::User=root download "$pkg=$ver" >download.log 2>&1; then
  echo "test/vm: cannot download $pkg=$ver (see $dir/download.log); update its line in test/vm/kernels" >&2
  exit 1
fi
dpkg-deb -x ./*.deb tree
release=$(ls tree/lib/modules)
vmlinuz=tree/boot/vmlinuz-$release

# The bzImage carries the kernel as one xz stream; its offset is the first xz magic.
offset=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1 || true)
if [[ -n $offset ]] && xz -dc --single-stream < <(tail -c +$((offset + 1)) "$vmlinuz") >vmlinux 2>/dev/null \
  && [[ $(head -c 4 vmlinux | tail -c 3) == ELF ]]; then
  kernel=vmlinux
else
  rm -f vmlinux; kernel=$vmlinuz
fi

# The .deb ships no modules.dep; kmod's depmod builds it so modprobe (and softdeps) work inside.
depmod -b tree "$release"

# initramfs: busybox plus the modules needed to reach the root over 9p, in dependency order.
mkdir -p initrd/bin initrd/modules initrd/dev initrd/proc initrd/sys initrd/hostroot initrd/upper initrd/newroot
cp /bin/busybox initrd/bin/busybox
: >initrd/modules/order
for m in virtio_pci 9pnet_virtio 9p overlay; do
  modprobe -d tree -S "$release" --show-depends "$m" | while read -r kind path _; do
    [[ $kind == insmod ]] || continue
    name=$(basename "$path"); name=${name%.xz}; name=${name%.zst}
    grep -qx "$name" initrd/modules/order && continue
    case $path in
      *.xz) xz -dc "$path" >"initrd/modules/$name" ;;
      *.zst) zstd -qdc "$path" >"initrd/modules/$name" ;;
      *) cp "$path" "initrd/modules/$name" ;;
    esac
    echo "$name" >>initrd/modules/order
  done
done
cp "$repo/test/vm/init" initrd/init
chmod +x initrd/init
(cd initrd && find . | cpio -o -H newc --quiet | gzip -1) >initrd.cpio.gz

cat >kernel.env <<ENV
release=$release
kernel=$dir/$kernel
initrd=$dir/initrd.cpio.gz
modules=$dir/tree/lib/modules/$release
ENV
rm -rf ./*.deb initrd
touch ready
echo "$dir"
