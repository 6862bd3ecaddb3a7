// s3rver.js DIR PORT — s3rver (from tests/servers/node) on 127.0.0.1:PORT
// with its objects under DIR, for tests/servers/with-cloud.sh.
//
// One change to the server: deleting an object does not remove the
// directories it leaves empty. s3rver stores objects as files and removes
// empty parent directories on DELETE; a PUT into the same directory at the
// same moment then fails to open its file, and the unhandled stream error
// kills the server (real S3 has no directories to race on). Empty
// directories are harmless to s3rver's listings.
'use strict';
const path = require('path');
const modules = path.join(__dirname, 'node', 'node_modules');
const fse = require(path.join(modules, 'fs-extra'));
const S3rver = require(path.join(modules, 's3rver'));

const [directory, port] = process.argv.slice(2);
fse.rmdir = async () => {};
new S3rver({ address: '127.0.0.1', port: Number(port), directory, silent: true })
  .run((err) => {
    if (err) {
      console.error(err);
      process.exit(1);
    }
    console.log(`s3rver listening on 127.0.0.1:${port}`);
  });
