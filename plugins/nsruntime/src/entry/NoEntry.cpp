// Architectures the container entry does not support: the command is exec'd directly.
#include "Process.h"

namespace mobileops::nsruntime {

const unsigned char kEntryBinary[] = {0};
const size_t kEntryBinarySize = 0;

} // namespace mobileops::nsruntime
