// Node-RED settings for the bench peer (pocketgate issue 7): flows only, on 127.0.0.1, no editor,
// no admin API, no credentials file prompt, no telemetry. Ports and the DHIS2 URL come from the
// environment the bench sets (PG_NR_HTTP_PORT, PG_NR_TCP_PORT, PG_NR_DHIS2_URL, …).
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: parseInt(process.env.PG_NR_HTTP_PORT || "1880", 10),
    httpAdminRoot: false,
    httpNodeRoot: "/",
    disableEditor: true,
    credentialSecret: false,
    flowFilePretty: false,
    functionExternalModules: false,
    diagnostics: { enabled: false, ui: false },
    telemetry: { enabled: false, updateNotification: false },
    runtimeState: { enabled: false, ui: false },
    logging: { console: { level: "warn", metrics: false, audit: false } },
    editorTheme: { projects: { enabled: false } },
};
