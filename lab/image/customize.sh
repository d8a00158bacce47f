#!/bin/sh
# Runs inside the freshly debootstrapped root (chroot) before it becomes the lab image.
# Part of the image recipe: any change here changes the image tag and triggers a rebuild.
set -eu
suite="$1" mirror="$2" security_mirror="$3"

cat > /etc/apt/sources.list <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
SOURCES

# One machine-id per container: systemd makes one at boot when the file is empty.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id

echo 'LANG=C.UTF-8' > /etc/default/locale

# Units that make no sense in a container, or that would fight Ansible for the dpkg lock.
for unit in apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
            getty.target console-getty.service systemd-firstboot.service \
            systemd-remount-fs.service sys-kernel-config.mount sys-kernel-debug.mount \
            sys-kernel-tracing.mount; do
  ln -sf /dev/null "/etc/systemd/system/$unit"
done

# The image carries no package lists (like Debian's official images): run `apt-get update`
# (Ansible: update_cache) before installing.
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log /var/log/apt/* /tmp/* /var/tmp/*
