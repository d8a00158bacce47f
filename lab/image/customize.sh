#!/bin/sh
# Runs inside the freshly debootstrapped root (chroot) before it becomes the lab image.
# Part of the image recipe: any change here changes the image tag and triggers a rebuild.
set -eu
suite="$1" mirror="$2" security_mirror="$3" login_user="$4"

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

# sshd as on a real server: keys only, no root login. Host keys are made at each container's
# first start (every host its own), never baked into the image.
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
cat > /etc/systemd/system/ssh.service.d/lab-host-keys.conf <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
cat > /etc/ssh/sshd_config.d/lab.conf <<'SSHD'
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
SSHD

# The login user: unprivileged, sudo without a password (Debian's cloud images do the same).
useradd --create-home --shell /bin/bash "$login_user"
passwd --lock "$login_user" >/dev/null
echo "$login_user ALL=(ALL) NOPASSWD:ALL" > "/etc/sudoers.d/90-lab-$login_user"
chmod 0440 "/etc/sudoers.d/90-lab-$login_user"

# The image carries no package lists (like Debian's official images): run `apt-get update`
# (Ansible: update_cache) before installing.
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log /var/log/apt/* /tmp/* /var/tmp/*
