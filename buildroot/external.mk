include $(sort $(wildcard $(BR2_EXTERNAL_POCKETGATE_PATH)/package/*/*.mk))
