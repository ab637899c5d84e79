# The toolbox manifest (plugins/integrity/src/Toolbox.h): the sha256, size and mode of
# every file mobileops runs under PREFIX, for `mobileops integrity check` and the plugin
# loader's `plugins.verify = manifest`.
#
#   cmake -DPREFIX=<dir> [-DOUTPUT=<file>] [-DLIBDIR=lib] -P ToolboxManifest.cmake
#
# LIBDIR is the install's libdir (GNUInstallDirs: lib/x86_64-linux-gnu in an install to
# /usr); OUTPUT defaults to PREFIX/LIBDIR/mobileops/toolbox.json. An unchanged set of
# files leaves OUTPUT untouched (its `created` aside), so builds do not churn.
#
# Which files: keep in step with coveredDirs() in plugins/integrity/src/Toolbox.cpp.
#   bin/mobileops, bin/mobileops-*    LIBDIR/mobileops/plugins/*.so
#   LIBDIR/mobileops/modules/*.so     libexec/mobileops/*    share/mobileops/scripts/*.lua
cmake_minimum_required(VERSION 3.25)

if(NOT PREFIX)
  message(FATAL_ERROR "ToolboxManifest.cmake: PREFIX is not set")
endif()
if(NOT LIBDIR)
  set(LIBDIR lib)
endif()
if(NOT OUTPUT)
  set(OUTPUT "${PREFIX}/${LIBDIR}/mobileops/toolbox.json")
endif()

set(_files "")
foreach(_pattern IN ITEMS bin/mobileops bin/mobileops-* ${LIBDIR}/mobileops/plugins/*.so
                          ${LIBDIR}/mobileops/modules/*.so libexec/mobileops/*
                          share/mobileops/scripts/*.lua)
  file(GLOB _found LIST_DIRECTORIES false RELATIVE "${PREFIX}" "${PREFIX}/${_pattern}")
  list(APPEND _files ${_found})
endforeach()
list(REMOVE_DUPLICATES _files)
list(SORT _files)
set(_existing "") # a dangling symlink would fail stat(1) below
foreach(_file IN LISTS _files)
  if(EXISTS "${PREFIX}/${_file}" AND NOT IS_DIRECTORY "${PREFIX}/${_file}")
    list(APPEND _existing "${_file}")
  endif()
endforeach()

# Modes and types in one stat(1) call: CMake cannot read either. -L: a symlinked file is
# recorded as what it points to, as the loader and the check open it.
set(_stats "")
if(_existing)
  list(TRANSFORM _existing PREPEND "${PREFIX}/" OUTPUT_VARIABLE _paths)
  execute_process(COMMAND stat -L -c "%a %F" ${_paths} OUTPUT_VARIABLE _stats
                  COMMAND_ERROR_IS_FATAL ANY)
  string(STRIP "${_stats}" _stats)
  string(REPLACE "\n" ";" _stats "${_stats}")
endif()

set(_entries "")
foreach(_file _stat IN ZIP_LISTS _existing _stats)
  if(NOT _stat MATCHES "^([0-7]+) regular")
    continue()
  endif()
  set(_mode "${CMAKE_MATCH_1}")
  file(SHA256 "${PREFIX}/${_file}" _sha)
  file(SIZE "${PREFIX}/${_file}" _size)
  string(LENGTH "${_mode}" _len)
  while(_len LESS 4)
    string(PREPEND _mode 0)
    math(EXPR _len "${_len} + 1")
  endwhile()
  string(REPLACE "\\" "\\\\" _key "${_file}")
  string(REPLACE "\"" "\\\"" _key "${_key}")
  list(APPEND _entries
       "    \"${_key}\": {\"sha256\": \"${_sha}\", \"size\": ${_size}, \"mode\": \"${_mode}\"}")
endforeach()
list(JOIN _entries ",\n" _body)
if(_body)
  set(_body "\n${_body}\n  ")
endif()

string(TIMESTAMP _created "%Y-%m-%dT%H:%M:%SZ" UTC)
set(_content "{\n  \"format\": 1,\n  \"algorithm\": \"sha256\",\n  \"created\": \"${_created}\",\n  \"files\": {${_body}}\n}\n")

set(_created_re "\"created\": \"[^\"]*\"")
if(EXISTS "${OUTPUT}")
  file(READ "${OUTPUT}" _old)
  string(REGEX REPLACE "${_created_re}" "" _old "${_old}")
  string(REGEX REPLACE "${_created_re}" "" _new "${_content}")
  if(_old STREQUAL _new)
    return()
  endif()
endif()
get_filename_component(_dir "${OUTPUT}" DIRECTORY)
file(MAKE_DIRECTORY "${_dir}")
# Written beside and renamed, so a reader never sees half a manifest.
file(WRITE "${OUTPUT}.tmp" "${_content}")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
list(LENGTH _entries _count)
message(STATUS "Toolbox manifest: ${_count} files in ${OUTPUT}")
