// deploy/pgherd.service and pgherd.toml.example are built into the binary as text (`pgherd install`).
declare module "*.service" {
  const text: string;
  export default text;
}
declare module "*.example" {
  const text: string;
  export default text;
}
