# mobileops_add_plugin(<name> SOURCES <src>... [LIBRARIES <lib>...] [DESTINATION <dir>]
#                      [NO_INSTALL])
#
# Build a mobileops plugin: a MODULE library `<name>.so` (no "lib" prefix) that exports
# only `mobileops_plugin_entry`. Symbols are hidden by default, static libraries linked in
# (LIBRARIES) keep theirs to themselves (--exclude-libs,ALL), and a linker version script
# makes every other symbol local, so plugins cannot clash with each other or with the
# host. Undefined symbols are link errors: a plugin reaches the host only through the
# mo_host_api table, never by linking against it.
#
# Installs to DESTINATION, by default ${CMAKE_INSTALL_LIBDIR}/mobileops/plugins under the
# project's CMAKE_INSTALL_PREFIX. The plugin directory of the mobileops installation the
# SDK came from is in ${mobileops_PLUGIN_DIR}.
#
# C++ sources are compiled as C++20 at least (<mobileops/plugin.hpp> needs it).
include_guard(GLOBAL)
include(GNUInstallDirs)

function(mobileops_add_plugin name)
  cmake_parse_arguments(PARSE_ARGV 1 P "NO_INSTALL" "DESTINATION" "SOURCES;LIBRARIES")
  if(P_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "mobileops_add_plugin(${name}): unknown arguments `${P_UNPARSED_ARGUMENTS}`")
  endif()
  if(NOT P_SOURCES)
    message(FATAL_ERROR "mobileops_add_plugin(${name}): SOURCES is required")
  endif()
  if(NOT TARGET mobileops::sdk)
    message(FATAL_ERROR "mobileops_add_plugin(${name}): target `mobileops::sdk` not found; "
                        "call find_package(mobileops) first")
  endif()

  add_library(${name} MODULE ${P_SOURCES})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(NOT DEFINED CMAKE_CXX_STANDARD OR CMAKE_CXX_STANDARD MATCHES "^(98|11|14|17)$")
    set_target_properties(${name} PROPERTIES CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON)
  endif()
  target_link_libraries(${name} PRIVATE mobileops::sdk ${P_LIBRARIES})
  set(_map "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/mobileops-plugin.map")
  target_link_options(${name} PRIVATE -Wl,--exclude-libs,ALL "-Wl,--version-script=${_map}"
                      -Wl,-z,defs)
  set_property(TARGET ${name} APPEND PROPERTY LINK_DEPENDS "${_map}")

  if(NOT P_NO_INSTALL)
    if(NOT P_DESTINATION)
      set(P_DESTINATION ${CMAKE_INSTALL_LIBDIR}/mobileops/plugins)
    endif()
    install(TARGETS ${name} LIBRARY DESTINATION ${P_DESTINATION})
  endif()
endfunction()
