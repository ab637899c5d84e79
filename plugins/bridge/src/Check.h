// What the bridge plugin's records (kind "network" networks, "netattach" attachments) say
// should exist in the calling thread's network namespace, against what does: the
// `network_check` method behind `mobileops integrity network`.
//
// A network's bridge, gateway addresses, nftables rules and `bridges` set element are
// expected while a container is attached to it, and also while its bridge exists (they
// are made together and stay after the last container leaves); an idle network whose
// bridge is gone (never used, or after a reboot) expects nothing, and its leftover rules
// are not extra. Each attachment expects its veths' host ends, on their network's bridge,
// and its published ports' rules.
//
// Expected rules are not written down twice: the Nft code that makes them renders them
// into a scratch network namespace, and the two tables are compared rule by rule (chain,
// comment and expressions of nft's JSON). Only links that look like ours are ever extra:
// bridges `mobileops0` and `mo-*`, veths `mo<8 hex><n>`; another mobileops root sharing
// the namespace shows up as extra, as it would to `system gc` if it swept by name.
#pragma once

#include <mobileops/common/Host.h>

#include <nlohmann/json.hpp>

namespace mobileops::bridge {

// {ok,
//  bridges: {expected, missing, extra},                       names
//  veths: {expected, missing, extra,                          names
//          detached: [{veth, bridge, master}]},               on no bridge or another one
//  nft: {table: "inet mobileops", present, missing, extra},   entries {kind: table | chain |
//        set | rule | element, chain?, set?, comment?, rule?, element?}, rule as nft prints it
//  addresses: {missing: [{bridge, network, address}]}}        a bridge without its gateway
// Throws Error when the namespace cannot be read, or the scratch namespace not made
// (it needs CAP_SYS_ADMIN, as reading nftables needs CAP_NET_ADMIN).
nlohmann::json checkNetworks(const common::Host &host);

} // namespace mobileops::bridge
