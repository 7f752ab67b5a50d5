"""`inferops router-agent`: the program beside nginx in every router pod (metrics from
nginx's access log, shadow relay, paired capture). Its configuration is
`inferops.contract.router.RouterAgentConfig`."""
