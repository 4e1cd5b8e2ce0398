// express@4 is installed under the alias `express4` so both majors can be
// tested side by side. @types/express describes 5.x; the surface the tests
// use (app.use/get/set, req.ip, res.status/json) is the same in 4.x.
declare module 'express4' {
  import express from 'express';
  export default express;
}
