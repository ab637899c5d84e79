# Shared build settings for mobileops targets.

find_package(PkgConfig REQUIRED)
pkg_check_modules(LUAJIT REQUIRED luajit)
find_package(SQLite3 REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(Threads REQUIRED)

set(MOBILEOPS_WARNINGS -Wall -Wextra)

if(MOBILEOPS_SANITIZE)
  add_compile_options(-fsanitize=${MOBILEOPS_SANITIZE} -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${MOBILEOPS_SANITIZE})
endif()

# LuaJIT and SQLite: the static archives when MOBILEOPS_STATIC_RUNTIME is on. Measured on
# the reference machine: dynamic libstdc++ + libluajit + libsqlite3 add ~1.1 ms to every
# exec of the dispatcher, the static link ~0.3 ms.
find_library(LUAJIT_STATIC_LIB NAMES libluajit-5.1.a HINTS ${LUAJIT_LIBRARY_DIRS})
find_library(SQLITE3_STATIC_LIB NAMES libsqlite3.a)
find_library(YAMLCPP_STATIC_LIB NAMES libyaml-cpp.a)
add_library(mobileops_yaml INTERFACE)
add_library(mobileops_luajit INTERFACE)
target_include_directories(mobileops_luajit INTERFACE ${LUAJIT_INCLUDE_DIRS})
add_library(mobileops_sqlite INTERFACE)
if(MOBILEOPS_STATIC_RUNTIME AND LUAJIT_STATIC_LIB AND SQLITE3_STATIC_LIB AND NOT MOBILEOPS_SANITIZE)
  target_link_libraries(mobileops_luajit INTERFACE ${LUAJIT_STATIC_LIB} ${CMAKE_DL_LIBS} m)
  target_link_libraries(mobileops_sqlite INTERFACE ${SQLITE3_STATIC_LIB} ${CMAKE_DL_LIBS} m
                                                   Threads::Threads)
  # Not -static-libgcc: a second copy of the unwinder aborts when an exception thrown
  # by a plugin (built against the system libgcc_s) crosses into the host.
  set(MOBILEOPS_STATIC_LINK_OPTIONS -static-libstdc++)
else()
  target_link_libraries(mobileops_luajit INTERFACE ${LUAJIT_LINK_LIBRARIES})
  target_link_libraries(mobileops_sqlite INTERFACE SQLite::SQLite3)
  set(MOBILEOPS_STATIC_LINK_OPTIONS "")
endif()
# yaml-cpp parses VirtualRoot spec files; static for the same start-up reason.
if(MOBILEOPS_STATIC_RUNTIME AND YAMLCPP_STATIC_LIB AND NOT MOBILEOPS_SANITIZE)
  target_link_libraries(mobileops_yaml INTERFACE ${YAMLCPP_STATIC_LIB})
else()
  find_package(yaml-cpp REQUIRED)
  target_link_libraries(mobileops_yaml INTERFACE yaml-cpp)
endif()

# A mobileops plugin built in-tree: hidden visibility, only the entry symbol exported,
# output into the build tree's plugin directory.
function(mobileops_plugin name)
  # SHARED_RUNTIME: link libstdc++ dynamically, for plugins whose libraries (Poco) load
  # the shared one anyway; two copies would split exception and type information.
  cmake_parse_arguments(P "SHARED_RUNTIME" "" "SOURCES;LIBRARIES" ${ARGN})
  add_library(${name} MODULE ${P_SOURCES})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    OUTPUT_NAME ${name}
    LIBRARY_OUTPUT_DIRECTORY ${MOBILEOPS_PLUGIN_OUTPUT_DIR}
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_compile_options(${name} PRIVATE ${MOBILEOPS_WARNINGS})
  target_link_libraries(${name} PRIVATE mobileops::sdk ${P_LIBRARIES})
  if(P_SHARED_RUNTIME)
    set(_runtime_options "")
  else()
    set(_runtime_options ${MOBILEOPS_STATIC_LINK_OPTIONS})
  endif()
  target_link_options(${name} PRIVATE ${_runtime_options} -Wl,--exclude-libs,ALL
                      -Wl,--no-undefined -Wl,-z,defs)
  install(TARGETS ${name} LIBRARY DESTINATION ${MOBILEOPS_INSTALL_PLUGINDIR})
  # The toolbox manifest (top-level CMakeLists.txt) is written once every plugin is built.
  set_property(GLOBAL APPEND PROPERTY MOBILEOPS_PLUGIN_TARGETS ${name})
endfunction()
