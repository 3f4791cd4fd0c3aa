// sicc's error family (mirrors sicc/errors.py): everything bad *data* can cause is a SiccError,
// and the subclass says what kind of problem it is. `error.name` is the Python class name.

export class SiccError extends Error {
  constructor(message) {
    super(message);
    this.name = this.constructor.name;
  }
}
/** The data is not a SIC file at all (wrong signature). */
export class NotSicError extends SiccError {}
/** The file ends before the first decodable point (header or hyperprior). */
export class TruncatedError extends SiccError {}
/** A checksum failed or a field is inconsistent: the file is damaged or forged. */
export class CorruptError extends SiccError {}
/** A valid file this decoder cannot decode (newer version, other model). */
export class UnsupportedError extends SiccError {}
/** The image exceeds the pixel budget (decompression-bomb guard). */
export class ImageTooLargeError extends SiccError {}
/** A model bundle that is damaged or does not match its manifest. */
export class WeightsError extends SiccError {}

/** One wording for the pixel budget (sicc/errors.py too_large_message). */
export function tooLargeMessage(width, height, [pw, ph], limit) {
  const size = pw === width && ph === height ? `${width}x${height}` : `${width}x${height} (padded to ${pw}x${ph})`;
  return `image is too large: ${size} = ${pw * ph} pixels, over the limit of ${limit}`;
}
