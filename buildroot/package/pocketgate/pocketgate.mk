################################################################################
#
# pocketgate
#
################################################################################

# Built from a release tarball so that Buildroot's cargo post-process vendors the crates
# (appliance.md §1.3: a `local` site skips vendoring and the offline build would fail).
POCKETGATE_VERSION = 0.1.0
POCKETGATE_SITE = $(call github,pocketgate,pocketgate,v$(POCKETGATE_VERSION))
POCKETGATE_LICENSE = Apache-2.0
POCKETGATE_LICENSE_FILES = LICENSE
POCKETGATE_CARGO_BUILD_OPTS = --bin pocketgate

define POCKETGATE_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0644 $(BR2_EXTERNAL_POCKETGATE_PATH)/../config/pocketgate.toml \
		$(TARGET_DIR)/usr/share/pocketgate/pocketgate.example.toml
	mkdir -p $(TARGET_DIR)/usr/share/pocketgate/temprs
	cp -a $(BR2_EXTERNAL_POCKETGATE_PATH)/../config/temprs/. $(TARGET_DIR)/usr/share/pocketgate/temprs/
endef

define POCKETGATE_USERS
	pocketgate 1000 pocketgate 1000 * /data/pocketgate - dialout pocketgate daemon
endef

$(eval $(cargo-package))
