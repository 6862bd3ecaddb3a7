// s3rver.js DIR PORT — s3rver (from tests/servers/node) on 127.0.0.1:PORT
// with its objects under DIR, for tests/servers/with-cloud.sh.
//
// One change to the server: deleting an object does not remove the
// directories it leaves empty. s3rver stores objects as files and removes
// empty parent directories on DELETE; a PUT into the same directory at the
// same moment then fails to open its file, and the unhandled stream error
// kills the server (real S3 has no directories to race on). Empty
// directories are harmless to s3rver's listings.
//
// Another: a PUT is answered only once its object is on disk. s3rver's
// putObject resolves when the body has been handed to the file's write
// stream, not when the stream has finished: a GET right after the answer
// could read the file before the bytes were there (an empty value, seen
// under ASan in conformance c39). Here the body goes to a temporary file
// that replaces the object's once it is complete, so a GET sees the old
// bytes or the new ones, never a part (real S3's read-after-write).
'use strict';
const crypto = require('crypto');
const path = require('path');
const { pipeline, Transform } = require('stream');
const modules = path.join(__dirname, 'node', 'node_modules');
const fse = require(path.join(modules, 'fs-extra'));
const S3rver = require(path.join(modules, 's3rver'));
const FilesystemStore = require(
  path.join(modules, 's3rver', 'lib', 'stores', 'filesystem'));

const [directory, port] = process.argv.slice(2);
fse.rmdir = async () => {};

let tmpSeq = 0;
FilesystemStore.prototype.putObject = async function putObject(object) {
  const objectPath = this.getResourcePath(object.bucket, object.key, 'object');
  const tmp = `${objectPath}.kvio-tmp-${process.pid}-${tmpSeq++}`;
  const md5 = crypto.createHash('md5');
  let size = 0;
  await fse.mkdirp(path.dirname(objectPath));
  try {
    if (Buffer.isBuffer(object.content)) {
      md5.update(object.content);
      size = object.content.length;
      await fse.writeFile(tmp, object.content);
    } else {
      await new Promise((resolve, reject) => {
        pipeline(
          object.content,
          new Transform({
            transform(chunk, encoding, callback) {
              md5.update(chunk, encoding);
              size += chunk.length;
              callback(null, chunk);
            },
          }),
          fse.createWriteStream(tmp),
          (err) => (err ? reject(err) : resolve()),
        );
      });
    }
    await fse.rename(tmp, objectPath);
  } catch (err) {
    await fse.remove(tmp).catch(() => {});
    throw err;
  }
  const digest = md5.digest('hex');
  await this.putMetadata(object.bucket, object.key, object.metadata, digest);
  return { size, md5: digest };
};
new S3rver({ address: '127.0.0.1', port: Number(port), directory, silent: true })
  .run((err) => {
    if (err) {
      console.error(err);
      process.exit(1);
    }
    console.log(`s3rver listening on 127.0.0.1:${port}`);
  });
